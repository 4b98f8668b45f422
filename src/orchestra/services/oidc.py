"""The OpenID Connect relying party: the issuer's discovery, the authorization request
(authorization code with PKCE, S256), the code's exchange at the token endpoint and the ID
token's checks (signature by the provider's JWKS, iss, aud, azp, exp, iat, nonce). It keeps no
state but caches of the provider's documents; services/sso.py drives it."""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from orchestra.errors import OrchestraError
from orchestra.oidc_settings import OidcSettings

with warnings.catch_warnings():  # Authlib prefers httpx2 to httpx, and says so at import
    import authlib.deprecate  # noqa: F401  (asks to show its warnings always: undone after)

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 10.0
# The provider's discovery document and keys are kept this long (keys are fetched again at
# once when a token names one not seen yet, at most every KEYS_REFRESH_SECONDS).
METADATA_SECONDS = 3600.0
KEYS_REFRESH_SECONDS = 10.0
CLOCK_LEEWAY = 60
SIGNING_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip


class ProviderUnavailable(OrchestraError):
    """The sign-in provider could not be reached or answered badly; try again later."""

    status_code = 502


class SignInInvalid(OrchestraError):
    """The sign-in's answer did not check out; start again from the login page."""

    status_code = 400


class OidcClient:
    """One configured provider, seen from this instance (its client)."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._metadata: dict[str, Any] | None = None
        self._metadata_loaded = 0.0
        self._keys: KeySet | None = None
        self._keys_loaded = 0.0

    def _client(self, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        auth_method = "client_secret_basic" if self.settings.client_secret else "none"
        return AsyncOAuth2Client(
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret or None,
            token_endpoint_auth_method=auth_method,
            scope=" ".join(self.settings.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
        )

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                response = await http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(
                f"the sign-in provider's {what} could not be read ({_reason(exc)})"
            ) from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"the sign-in provider's {what} is not a JSON object")
        return document

    async def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document, checked to name this very issuer."""
        if (
            self._metadata is not None
            and time.monotonic() - self._metadata_loaded < METADATA_SECONDS
        ):
            return self._metadata
        issuer = self.settings.issuer
        document = await self._get_json(
            f"{issuer}/.well-known/openid-configuration", "discovery document"
        )
        if str(document.get("issuer", "")).rstrip("/") != issuer:
            raise ProviderUnavailable(
                f"the discovery document names issuer {document.get('issuer')!r}, "
                f"not the configured {issuer!r}"
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str):
                raise ProviderUnavailable(f"the discovery document has no {name}")
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise ProviderUnavailable("the provider does not support PKCE with S256")
        self._metadata, self._metadata_loaded = document, time.monotonic()
        return document

    async def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        metadata = await self.metadata()
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return str(url)

    async def exchange(self, code: str, code_verifier: str, redirect_uri: str) -> dict[str, Any]:
        """The token endpoint's answer for this authorization code."""
        metadata = await self.metadata()
        try:
            async with self._client(redirect_uri) as client:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except Exception as exc:  # Authlib's errors, httpx's, a body that is no JSON
            raise ProviderUnavailable(
                f"the sign-in provider refused the code ({_reason(exc)})"
            ) from None
        if not isinstance(token.get("id_token"), str):
            raise ProviderUnavailable("the sign-in provider's token answer has no ID token")
        return dict(token)

    async def _key_set(self, kid: str | None) -> KeySet:
        now = time.monotonic()
        known = self._keys is not None and (
            kid is None or any(k.kid == kid for k in self._keys.keys)
        )
        fresh = now - self._keys_loaded < METADATA_SECONDS
        if self._keys is not None and (
            (known and fresh) or now - self._keys_loaded < KEYS_REFRESH_SECONDS
        ):
            return self._keys
        metadata = await self.metadata()
        document = await self._get_json(metadata["jwks_uri"], "keys (JWKS)")
        try:
            self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderUnavailable(f"the provider's keys are not usable ({exc})") from None
        self._keys_loaded = now
        return self._keys

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once its signature and claims are checked."""
        kid = _header(id_token).get("kid")
        keys = await self._key_set(kid if isinstance(kid, str) else None)
        try:
            token = jwt.decode(id_token, keys, algorithms=list(SIGNING_ALGORITHMS))
        except JoseError as exc:
            raise SignInInvalid(f"the ID token's signature does not check ({exc.error})") from None
        claims = dict(token.claims)
        metadata = await self.metadata()
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": self.settings.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignInInvalid(f"the ID token is not valid here ({exc.description})") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.settings.client_id:
            raise SignInInvalid("the ID token was issued to another client (azp)")
        return claims

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        """The userinfo endpoint's claims (empty when the provider has none)."""
        metadata = await self.metadata()
        url = metadata.get("userinfo_endpoint")
        if not isinstance(url, str):
            return {}
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                response = await http.get(url, headers={"Authorization": f"Bearer {access_token}"})
            response.raise_for_status()
            claims = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(
                f"the sign-in provider's userinfo could not be read ({_reason(exc)})"
            ) from None
        return claims if isinstance(claims, dict) else {}


def _header(token: str) -> Mapping[str, Any]:
    """A JWT's protected header, unverified (to choose its key)."""
    try:
        encoded = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, IndexError):
        raise SignInInvalid("the ID token is not a JWT") from None
    if not isinstance(header, dict):
        raise SignInInvalid("the ID token is not a JWT")
    return header


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong, without a traceback."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
