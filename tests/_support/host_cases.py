"""Case tables shared by more than one test module: each is the parametrization of one test
and the corpus another test checks a faster path against."""

from __future__ import annotations

NORMALIZE_DOMAIN: list[tuple[object, str | None]] = [
    ("example.com", "example.com"),
    ("  Example.COM  ", "example.com"),
    ("example.com.", "example.com"),
    ("https://example.com", "example.com"),
    ("http://example.com/some/path?x=1#y", "example.com"),
    ("example.com/path", "example.com"),
    ("example.com:8080", "example.com"),
    ("//example.com", "example.com"),
    ("user@example.com", "example.com"),
    ("www.example.com", "example.com"),
    ("https://WWW.example.com:443/", "example.com"),
    ("www.com", "www.com"),  # nothing would be left but a TLD
    ("*.example.com", "example.com"),
    ("blog.example.com", "blog.example.com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("localhost", "localhost"),
    ("localhost:3000", "localhost"),
    ("192.168.1.10", "192.168.1.10"),
    ("[2001:db8::1]:8080", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"),
    ("", None),
    ("   ", None),
    ("https://", None),
    ("not a domain", None),
    ("exa_mple!.com", None),
    ("example.com:99999", None),
    (None, None),
    (42, None),
]
"""``normalize_domain(domain) == expected``: what people type in the dashboard."""


HOST_MATCHES_DOMAIN: list[tuple[str, str, bool]] = [
    ("example.com", "example.com", True),
    ("EXAMPLE.com", "example.COM", True),
    ("example.com.", "example.com", True),
    ("blog.example.com", "example.com", True),
    ("a.b.c.example.com", "example.com", True),
    ("www.example.com", "example.com", True),
    ("example.com", "www.example.com", True),
    ("blog.example.com", "https://www.example.com/", True),
    ("example.com:8080", "example.com", True),
    ("xn--bcher-kva.de", "bücher.de", True),
    ("shop.xn--bcher-kva.de", "https://bücher.de", True),
    ("badexample.com", "example.com", False),
    ("example.com.evil.net", "example.com", False),
    ("example.co", "example.com", False),
    ("com", "example.com", False),
    ("evil.net", "example.com", False),
    ("example.com", "blog.example.com", False),
    ("xexample.com", "example.com", False),
    ("127.0.0.1", "127.0.0.1", True),
    ("1.127.0.0.1", "127.0.0.1", False),
    ("::1", "[::1]", True),
    ("example.com", "", False),
    ("example.com", "not a domain", False),
    ("", "example.com", False),
    ("exa mple.com", "example.com", False),
]
"""``host_matches_domain(host, domain) is expected``."""


IS_LOCALHOST: list[tuple[str, bool]] = [
    ("localhost", True),
    ("LOCALHOST", True),
    ("localhost.", True),
    ("localhost:3000", True),
    ("app.localhost", True),
    ("a.b.localhost", True),
    ("127.0.0.1", True),
    ("127.255.255.254", True),
    ("127.0.0.1:8000", True),
    ("::1", True),
    ("[::1]", True),
    ("[::1]:8000", True),
    ("::ffff:127.0.0.1", True),
    ("0.0.0.0", True),
    ("::", True),
    ("localhost.example.com", False),
    ("mylocalhost", False),
    ("notlocalhost.com", False),
    ("128.0.0.1", False),
    ("10.0.0.1", False),
    ("192.168.1.1", False),
    ("example.com", False),
    ("::2", False),
    ("", False),
    ("local host", False),
]
"""``is_localhost(host) is expected``."""
