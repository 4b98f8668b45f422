"""A network namespace joined to this one by a veth pair, to cut a worker off its master.

The worker runs inside the namespace (`ip netns exec`); the master listens on the host end of the
pair. Two ways to cut, both with iproute2 alone (this machine has no iptables or nft):

- `drop`: blackhole routes on both sides, so every packet between the two addresses vanishes
  silently, established connections included (as an iptables DROP rule would);
- `reset`: the namespace's TCP connections to the master are destroyed (`ss -K`, which sends a
  reset to the master's end), and `prohibit` routes on both sides make every new connection
  attempt fail at once (as an iptables REJECT rule would).

Healing removes the routes. Everything is undone in `delete`, which the tests call in a finally.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import uuid


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"orprobe{uuid.uuid4().hex[:6]}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"`ip netns add` failed (root and CAP_SYS_ADMIN needed): {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if shutil.which("ss") is None:
        return "iproute2's `ss` is not installed"
    return None


def _ip(*arguments: str, netns: str | None = None, check: bool = True) -> None:
    argv = ["ip", *arguments] if netns is None else ["ip", "netns", "exec", netns, "ip", *arguments]
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


class Namespace:
    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.name = f"orproof{suffix}"
        self.host_link = f"orh{suffix}"
        self.ns_link = f"orn{suffix}"
        # A /30 of its own, unlikely to meet another test's.
        a, b, c = random.randrange(64, 128), random.randrange(256), random.randrange(64) * 4
        self.host_address = f"10.{a}.{b}.{c + 1}"
        self.ns_address = f"10.{a}.{b}.{c + 2}"
        self.cut_mode: str | None = None

    def create(self) -> Namespace:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link)
        _ip("link", "set", self.ns_link, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        _ip("addr", "add", f"{self.ns_address}/30", "dev", self.ns_link, netns=self.name)
        _ip("link", "set", self.ns_link, "up", netns=self.name)
        _ip("link", "set", "lo", "up", netns=self.name)
        return self

    def cut(self, mode: str) -> None:
        """Cut the link: `drop` (silent) or `reset` (connections reset, new ones refused)."""
        assert mode in ("drop", "reset"), mode
        route = "blackhole" if mode == "drop" else "prohibit"
        _ip("route", "add", route, f"{self.ns_address}/32")
        _ip("route", "add", route, f"{self.host_address}/32", netns=self.name)
        self.cut_mode = mode
        if mode == "reset":
            argv = ["ip", "netns", "exec", self.name, "ss", "-K", "-t", "dst", self.host_address]
            subprocess.run(argv, capture_output=True)

    def heal(self) -> None:
        if self.cut_mode is None:
            return
        route = "blackhole" if self.cut_mode == "drop" else "prohibit"
        _ip("route", "del", route, f"{self.ns_address}/32", check=False)
        _ip("route", "del", route, f"{self.host_address}/32", netns=self.name, check=False)
        self.cut_mode = None

    def delete(self) -> None:
        with contextlib.suppress(Exception):
            self.heal()
        _ip("link", "del", self.host_link, check=False)
        _ip("netns", "del", self.name, check=False)
