"""A small HTTP client of the native API (the CLI's remote commands use it)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.body = body


class GroupdClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        return body

    def delete_group(
        self, group_id: str, *, release_units: bool, dry_run: bool, wait: float
    ) -> tuple[int, dict[str, Any]]:
        response = self.http.delete(
            f"/api/v1/groups/{group_id}",
            params={
                "releaseConsumedUnits": str(release_units).lower(),
                "dryRun": str(dry_run).lower(),
                "wait": str(wait),
            },
        )
        return response.status_code, self._json(response)

    def list_deleted(self, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._json(self.http.get("/api/v1/deleted-groups", params=params))  # type: ignore[no-any-return]

    def restore_deleted(
        self, group_id: str, *, parent_id: str | None, name: str | None, wait: float
    ) -> dict[str, Any]:
        body = {key: value for key, value in (("parentId", parent_id), ("name", name)) if value}
        response = self.http.post(
            f"/api/v1/deleted-groups/{group_id}/restore", json=body, params={"wait": str(wait)}
        )
        return self._json(response)  # type: ignore[no-any-return]

    def purge_deleted(self, group_id: str, *, wait: float) -> dict[str, Any]:
        response = self.http.delete(
            f"/api/v1/deleted-groups/{group_id}", params={"wait": str(wait)}
        )
        return self._json(response)  # type: ignore[no-any-return]

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/api/v1/operations/{operation_id}"))  # type: ignore[no-any-return]

    def list_operations(self, *, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        body = self._json(self.http.get("/api/v1/operations", params=params))
        return body["items"]  # type: ignore[no-any-return]

    def resume_operation(self, operation_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/api/v1/operations/{operation_id}/resume"))  # type: ignore[no-any-return]

    def get_group(self, group_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/api/v1/groups/{group_id}"))  # type: ignore[no-any-return]

    def call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Any native API call; the decoded answer, or ApiError."""
        response = self.http.request(method, path, json=json, params=params)
        if response.status_code == 204:
            return None
        return self._json(response)
