"""The dashboard's files, served by the plane itself: `/` is index.html, `/static/...` the rest.

Nothing is built at install time and nothing comes from a CDN, so the pages work offline and
under a Content-Security-Policy that allows scripts and styles from this origin only: no
inline script, no inline style, no eval. A name like `<script>` in the data can then do no
harm even if some code were to render it as HTML by mistake.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path, PurePosixPath

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate every time (a 304 on loopback costs well under a millisecond), so a new plane
    # version is never shown with an old page's scripts.
    "Cache-Control": "no-cache",
}
# What the page is made of; nothing else in this package (its Python, say) is served.
SERVED_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
WEB_ROOT = Path(str(files("brev.server.web")))


def add_dashboard(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> Response:
        return FileResponse(WEB_ROOT / "index.html", headers=SECURITY_HEADERS)

    @app.get("/static/{path:path}", include_in_schema=False)
    def static(path: str, request: Request) -> Response:
        served = _served_file(path)
        if served is None:
            return Response(status_code=404, headers=SECURITY_HEADERS)
        stat = served.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        headers = {**SECURITY_HEADERS, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return FileResponse(
            served, media_type=SERVED_TYPES[served.suffix], headers=headers, stat_result=stat
        )


def _served_file(path: str) -> Path | None:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or relative.suffix not in SERVED_TYPES:
        return None
    candidate = (WEB_ROOT / relative).resolve()
    if not candidate.is_relative_to(WEB_ROOT.resolve()) or not candidate.is_file():
        return None
    return candidate
