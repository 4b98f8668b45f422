"""What the tests that run real processes (tests/system, tests/proof, tests/browser, tests/e2e)
and the benchmarks (bench/) share, a module a job:

- waiting: poll a condition with a deadline;
- procfs: what /proc says about processes (gone, children, CPU, memory, a test's tag);
- processes: start and stop `orchestra` processes, wait for a server's URL and health;
- accounts: the administrator and the workers' user, made with `orchestra admin`;
- databases: SQLite and PostgreSQL databases copied from prepared templates;
- api: an HTTP client of the API with a token, and trigger/wait helpers;
- cluster: servers and workers on one database;
- jobs: commands for test jobs' steps;
- fixtures: the pytest fixtures built on them (a plugin loaded by tests/conftest.py).
"""
