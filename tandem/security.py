"""Security headers Django's SecurityMiddleware does not set: a Content-Security-Policy on every
response, so a script that slips into a page (a prompt or a model's reply rendered unescaped)
cannot run.

Scripts only from Tandem's own origin, never inline: the pages load static/frontend/annotate.js,
admin's scripts are files, and Swagger UI's start-up script is served from its own URL
(SpectacularSwaggerSplitView). Styles may be inline: the research pages' and admin's few
<style> blocks, and the charts, which are matplotlib's SVG with style attributes and a <style>
element of its own; a style cannot run code. Images: Tandem's and data: URIs (the empty
favicon, Swagger UI's icons).
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
