"""The operator CLI's HTTP client of the control API (``DIALGATE_URL``)."""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Client:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self.actor = f"cli:{getpass.getuser()}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                0,
                "unreachable",
                f"the control service is not reachable at {self.base_url} ({exc}); "
                "start it with `dialgate up` (or `make run`), or set DIALGATE_URL",
            ) from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise ApiError(resp.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(resp.status_code, "http_error", resp.text[:500]) from None
        return resp.json()

    def campaigns(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/campaigns")["campaigns"])

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/campaigns/{campaign_id}"))

    def diagnosis(self, campaign_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/campaigns/{campaign_id}/diagnosis"))

    def preflight(self, campaign_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/campaigns/{campaign_id}/preflight"))

    def overview(self, campaign_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/campaigns/{campaign_id}/overview"))

    def create(self, **body: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/api/v1/campaigns", json=body))

    def act(
        self, campaign_id: int, action: str, hangup: str | None = None, **body: Any
    ) -> dict[str, Any]:
        body.setdefault("actor", self.actor)
        body.setdefault("source", "operator")
        params = {"hangup": hangup} if hangup else None
        path = f"/api/v1/campaigns/{campaign_id}/{action}"
        return dict(self.request("POST", path, json=body, params=params))

    def attempts(
        self, campaign_id: int, limit: int, disposition: str | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if disposition:
            params["disposition"] = disposition
        answer = self.request("GET", f"/api/v1/campaigns/{campaign_id}/attempts", params=params)
        return list(answer["attempts"])

    def import_csv(self, campaign_id: int, chunks: Iterable[bytes]) -> dict[str, Any]:
        """A CSV file in one request, sent as it is read (all or nothing on a server error)."""
        return dict(
            self.request(
                "POST",
                f"/api/v1/campaigns/{campaign_id}/contacts",
                content=chunks,
                headers={"Content-Type": "text/csv"},
            )
        )

    def add_contacts(self, campaign_id: int, contacts: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(
            self.request(
                "POST", f"/api/v1/campaigns/{campaign_id}/contacts", json={"contacts": contacts}
            )
        )

    def update(self, campaign_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v1/campaigns/{campaign_id}", json=body))

    def org_settings(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/org/settings"))

    def org_settings_put(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("PUT", "/api/v1/org/settings", json=body))

    def dnc(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/dnc")["phones"])

    def dnc_add(self, phones: list[str]) -> dict[str, Any]:
        return dict(
            self.request("POST", "/api/v1/dnc", json={"phones": phones, "actor": self.actor})
        )

    def dnc_remove(self, phone: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/dnc/{quote(phone)}"))

    def estop(self, lift: bool, reason: str | None, hangup: str | None = None) -> dict[str, Any]:
        body = {"actor": self.actor, "reason": reason}
        params = {"hangup": hangup} if hangup and not lift else None
        method = "DELETE" if lift else "POST"
        return dict(self.request(method, "/api/v1/emergency-stop", json=body, params=params))

    def estop_state(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/emergency-stop"))

    def workers(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/workers")["workers"])

    def tokens(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/tokens")["tokens"])

    def create_token(self, **body: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/api/v1/tokens", json=body))

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/tokens/{token_id}"))

    def webhooks(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/webhooks")["webhooks"])

    def create_webhook(self, url: str, events: list[str]) -> dict[str, Any]:
        body = {"url": url, "events": events, "actor": self.actor}
        return dict(self.request("POST", "/api/v1/webhooks", json=body))

    def remove_webhook(self, webhook_id: int) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/webhooks/{webhook_id}"))

    def test_webhook(self, webhook_id: int) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/v1/webhooks/{webhook_id}/test"))

    def webhook_deliveries(self, webhook_id: int, limit: int) -> list[dict[str, Any]]:
        path = f"/api/v1/webhooks/{webhook_id}/deliveries"
        return list(self.request("GET", path, params={"limit": limit})["deliveries"])

    def ready(self) -> dict[str, Any]:
        resp = self.http.get("/readyz")
        return dict(resp.json())

    def transitions(self, campaign_id: int) -> list[dict[str, Any]]:
        return list(
            self.request("GET", f"/api/v1/campaigns/{campaign_id}/transitions")["transitions"]
        )


def make_client() -> Client:
    """The API client, signed in with DIALGATE_TOKEN (or DIALGATE_ADMIN_TOKEN)."""
    from shared.settings import Settings

    settings = Settings()
    return Client(settings.url, token=settings.secret("token") or settings.secret("admin_token"))
