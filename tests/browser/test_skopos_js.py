"""The browser client, ``src/skopos/static/skopos.js``, in a real headless Chromium.

The pages load the file that is served, ``skopos.min.js`` (see ``served_script`` in
``tests/_support/recording_server.py``). Nothing in the browser is faked, with two exceptions
named where they happen: Chromium has no Global Privacy Control switch yet, and two tests remove
``navigator.sendBeacon`` to exercise the fetch fallback of browsers that lack it.

What headless Chromium cannot show: a page going hidden and visible again while it stays open
(headless tabs are always visible; only leaving or closing the page hides it), so the "count only
visible time" rule is checked by reading, not here; and the back/forward cache, which Playwright
turns off.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests._support.chromium import launch_options
from tests._support.recording_server import STUB, Site

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright

BASE_KEYS = {"type", "name", "url", "screenWidth", "screenHeight", "language"}


def screen(page: Page) -> dict[str, Any]:
    size: dict[str, Any] = page.evaluate(
        "({screenWidth: screen.width, screenHeight: screen.height, language: navigator.language})"
    )
    return size


def urls(events: list[dict[str, Any]]) -> list[str]:
    return [str(event["url"]) for event in events]


# --------------------------------------------------------------------------------------------
# Page views


def test_first_page_view_payload(site: Site, page: Page) -> None:
    site.serve("from", b'<a id="go" href="landing?utm_source=news#intro">go</a>')
    landing = site.page("landing")
    page.goto(site.url("from"))
    page.click("#go")

    (view,) = site.wait(type="pageView")
    assert view == {
        "type": "pageView",
        "name": f"{site.prefix}landing",
        "url": f"{landing}?utm_source=news#intro",
        "referrer": site.url("from"),
        **screen(page),
    }
    assert screen(page)["language"] == "de-CH"  # the context's locale, as the user has it
    (post,) = site.posts()
    assert post.path == "/e/collect"
    assert post.content_type == "text/plain"  # a CORS-safelisted type: no preflight
    site.flush(page)
    assert len(site.events()) == 1


def test_default_endpoint(site: Site, page: Page) -> None:
    page.goto(site.page(attrs=""))
    site.wait(type="pageView")
    assert [post.path for post in site.posts()] == ["/api/event"]


def test_push_state_is_one_page_view_and_ends_the_page(site: Site, page: Page) -> None:
    first = site.page("app")
    page.goto(first)
    site.wait(type="pageView")

    page.evaluate("history.pushState({}, '', 'app/settings?tab=2')")
    views = site.wait(2, type="pageView")
    assert views[1]["url"] == site.url("app/settings?tab=2")
    assert views[1]["name"] == f"{site.prefix}app/settings"
    assert views[1]["referrer"] == first  # the previous in-app page

    (exit_event,) = site.wait(type="custom", name="exit")
    assert exit_event["url"] == first  # the page that ended, not the new one
    assert isinstance(exit_event["customData"]["duration"], int)
    assert exit_event["customData"]["duration"] >= 0

    site.flush(page)
    assert len(site.events("pageView")) == 2
    assert len(site.events(name="exit")) == 1


def test_same_url_history_calls_are_not_page_views(site: Site, page: Page) -> None:
    page.goto(site.page("app"))
    site.wait(type="pageView")

    page.evaluate(
        """() => {
            history.replaceState({scroll: 1}, '');
            history.replaceState(null, '', location.href);
            history.pushState(null, '', location.pathname);
        }"""
    )
    site.flush(page)
    assert len(site.events("pageView")) == 1
    assert site.events(name="exit") == []

    page.evaluate("history.replaceState(null, '', 'moved')")  # a real change still counts
    views = site.wait(2, type="pageView")
    assert views[1]["url"] == site.url("moved")


def test_back_is_one_page_view(site: Site, page: Page) -> None:
    first = site.page("a")
    page.goto(first)
    page.evaluate("window.pops = 0; addEventListener('popstate', () => pops++)")
    page.evaluate("history.pushState({}, '', 'b')")
    site.wait(2, type="pageView")

    page.evaluate("history.back()")
    page.wait_for_function("pops === 1")
    site.wait(3, type="pageView")
    site.flush(page)
    # Beacons travel on separate connections: compare without their arrival order.
    assert sorted(urls(site.events("pageView"))) == sorted([first, site.url("b"), first])


def test_back_firing_popstate_and_hashchange_counts_once(site: Site, page: Page) -> None:
    first = site.page("spa")
    page.goto(first)
    page.evaluate(
        """() => {
            window.seen = [];
            addEventListener('popstate', () => seen.push('popstate'));
            addEventListener('hashchange', () => seen.push('hashchange'));
            location.hash = '#/inbox';
        }"""
    )
    site.wait(2, type="pageView")

    page.evaluate("history.back()")
    # Both events really fire for this one navigation...
    page.wait_for_function(
        "seen.includes('popstate') && seen.filter(e => e == 'hashchange').length == 2"
    )
    site.wait(3, type="pageView")
    site.flush(page)
    # ...and it is still one page view.
    assert sorted(urls(site.events("pageView"))) == sorted([first, f"{first}#/inbox", first])


def test_hash_routes_count_and_anchors_do_not(site: Site, page: Page) -> None:
    first = site.page("docs", '<h2 id="section">Section</h2>')
    page.goto(first)
    site.wait(type="pageView")

    page.evaluate("location.hash = '#section'")  # an in-page anchor: same page
    page.wait_for_function("location.hash == '#section'")
    site.flush(page)
    assert len(site.events("pageView")) == 1

    page.evaluate("location.hash = '#/users/7'")
    site.wait(2, type="pageView")
    page.evaluate("location.hash = '#!/legacy'")
    site.wait(3, type="pageView")
    site.flush(page)
    assert sorted(urls(site.events("pageView"))) == [
        first,
        f"{first}#!/legacy",
        f"{first}#/users/7",
    ]


def test_script_included_twice_counts_once(site: Site, page: Page) -> None:
    page.goto(site.page(script_tags=2))
    page.evaluate("skopos('event', 'once')")
    site.wait(name="once")
    site.flush(page)
    assert len(site.events("pageView")) == 1
    assert len(site.events(name="once")) == 1


# --------------------------------------------------------------------------------------------
# Custom events


def test_custom_events_before_and_after_load(site: Site, page: Page) -> None:
    early = "<script>skopos('event', 'early', {plan: 'pro', seats: 3})</script>"
    url = site.page(head=STUB + early)
    page.goto(url)
    (event,) = site.wait(type="custom", name="early")
    assert event == {
        "type": "custom",
        "name": "early",
        "url": url,
        "customData": {"plan": "pro", "seats": 3},
        **screen(page),
    }

    page.evaluate("skopos('event', 'late')")
    (late,) = site.wait(name="late")
    assert set(late) == BASE_KEYS  # no customData when none was given

    # Misuse is ignored, never thrown into the page.
    page.evaluate(
        """() => {
            skopos(); skopos('event'); skopos('event', 42); skopos('unknown', 'x');
            const cyclic = {}; cyclic.self = cyclic;
            skopos('event', 'cyclic', cyclic);
        }"""
    )
    site.flush(page)
    assert sorted(e["name"] for e in site.events("custom")) == ["early", "late"]


def test_data_skopos_event_click(site: Site, page: Page) -> None:
    body = (
        '<button id="buy" data-skopos-event="signup" data-skopos-event-plan="pro"'
        ' data-skopos-event-billing-cycle="yearly"><span id="label">Sign up</span></button>'
        '<div data-skopos-event="banner"><p id="inner">ad</p></div>'
    )
    page.goto(site.page(body=body))
    page.click("#label")  # a click on a child of the tagged element
    page.click("#inner")

    signup = site.wait(name="signup")[0]
    assert signup["customData"] == {"plan": "pro", "billing-cycle": "yearly"}
    assert site.wait(name="banner")[0]["customData"] == {}


# --------------------------------------------------------------------------------------------
# JavaScript errors


def test_errors_and_rejections(site: Site, page: Page) -> None:
    body = (
        '<img src="missing.png" alt="">'  # a failed resource load is not a JS error
        '<button id="boom" onclick="throw new Error(\'boom\')">boom</button>'
    )
    page.goto(site.page(body=body))
    page.click("#boom")
    page.click("#boom")  # the same message and stack again: not reported twice
    page.evaluate(
        """() => {
            setTimeout(() => Promise.reject(new Error('nope')));
            setTimeout(() => Promise.reject('plain'));
        }"""
    )
    site.wait(3, type="jsError")
    site.flush(page)

    reported = site.events("jsError")
    errors = {e["errorMessage"]: e for e in reported}
    assert sorted(errors) == ["Uncaught Error: boom", "nope", "plain"]
    assert len(reported) == 3  # "boom" once, though thrown twice
    boom = errors["Uncaught Error: boom"]
    assert set(boom) == BASE_KEYS | {"errorMessage", "stackTrace"}
    assert boom["name"] == "jsError"
    assert boom["stackTrace"].startswith("Error: boom")
    assert "onclick" in boom["stackTrace"]
    assert errors["nope"]["stackTrace"].startswith("Error: nope")
    assert errors["plain"]["stackTrace"] == ""


def test_errors_are_capped_per_page_load(site: Site, page: Page) -> None:
    page.goto(site.page())
    page.evaluate(
        """() => {
            window.thrown = 0;
            addEventListener('error', () => thrown++);
            for (let i = 0; i < 15; i++) setTimeout(() => { throw new Error('e' + i); });
        }"""
    )
    page.wait_for_function("thrown === 15")
    site.wait(10, type="jsError")
    site.flush(page)
    reported = sorted(e["errorMessage"] for e in site.events("jsError"))
    assert reported == sorted(f"Uncaught Error: e{i}" for i in range(10))


# --------------------------------------------------------------------------------------------
# Page exits: a custom event "exit" with the seconds the page was visible, once per page view


def test_an_exit_on_navigation_is_sent_once(site: Site, page: Page) -> None:
    first = site.page("read")
    nxt = site.page("next")
    started = time.monotonic()
    page.goto(first)
    site.wait(type="pageView")
    page.wait_for_timeout(1600)
    page.goto(nxt)  # fires both visibilitychange (hidden) and pagehide on the old page

    (exit_event,) = site.wait(type="custom", name="exit")
    elapsed = time.monotonic() - started
    assert exit_event["url"] == first
    assert 2 <= exit_event["customData"]["duration"] <= round(elapsed)
    site.flush(page)
    assert len(site.events(name="exit")) == 1


def test_an_exit_on_tab_close(site: Site, page: Page) -> None:
    url = site.page("close-me")
    page.goto(url)
    site.wait(type="pageView")
    page.wait_for_timeout(1200)
    page.close(run_before_unload=True)  # the unload steps run: the beacon goes out

    (exit_event,) = site.wait(type="custom", name="exit")
    assert exit_event["url"] == url
    assert exit_event["customData"] == {"duration": 1}


# --------------------------------------------------------------------------------------------
# Outbound links and downloads


def test_outbound_links(site: Site, page: Page) -> None:
    elsewhere = f"{site.other_origin}/elsewhere?q=1"
    stopped = f"{site.other_origin}/stopped"
    body = (
        f'<a id="out" href="{elsewhere}">out</a>'
        # The page swallows this click; capture-phase tracking still sees it.
        f'<a id="stopped" href="{stopped}"'
        ' onclick="event.stopPropagation(); event.preventDefault()">stopped</a>'
        '<a id="in" href="inside">inside</a>'
    )
    page.goto(site.page("start", body))
    site.page("inside", f'<a id="out" href="{elsewhere}">out</a>')

    page.click("#out", button="middle")  # auxclick, opens a new tab
    page.click("#out", button="right")  # auxclick too, but opens nothing: not counted
    page.click("#stopped")
    site.wait(2, type="click", name="outbound")
    page.click("#in")  # same host: a page view, not an outbound link
    page.wait_for_url(site.url("inside"))
    site.wait(2, type="pageView")
    page.click("#out")  # a real navigation away: the beacon must survive the unload
    page.wait_for_url(elsewhere)

    outbound = site.wait(3, type="click", name="outbound")
    time.sleep(0.2)  # the page is gone: no sentinel possible, a short grace instead
    assert len(site.events(name="outbound")) == 3
    assert sorted((e["url"], e["customData"]["url"]) for e in outbound) == [
        (site.url("inside"), elsewhere),
        (site.url("start"), elsewhere),
        (site.url("start"), stopped),
    ]


def test_download_links(site: Site, page: Page) -> None:
    attachment = {"Content-Disposition": "attachment"}
    site.serve("files/report.pdf", b"%PDF-1.4", "application/pdf", headers=attachment)
    site.serve("export", b"a,b\n1,2\n", "text/csv", headers=attachment)
    site.serve("files/data.zip", b"PK", "application/zip", headers=attachment)
    remote_zip = f"{site.other_origin}{site.prefix}files/data.zip"
    body = (
        '<a id="pdf" href="files/report.pdf">pdf</a>'
        '<a id="export" href="export" download="export.csv">export</a>'
        f'<a id="zip" href="{remote_zip}">zip on another host</a>'
    )
    page.goto(site.page("files", body))
    for link in ("#pdf", "#export", "#zip"):
        with page.expect_download():
            page.click(link)
    site.wait(3, type="click", name="download")
    site.flush(page)

    downloads = sorted(
        (e["customData"]["filename"], e["customData"]["url"]) for e in site.events(name="download")
    )
    assert downloads == sorted(
        [
            ("report.pdf", site.url("files/report.pdf")),
            ("export.csv", site.url("export")),
            ("data.zip", remote_zip),
        ]
    )
    assert site.events(name="outbound") == []  # the zip is a download, not also outbound


# --------------------------------------------------------------------------------------------
# Configuration


def test_switches_turn_features_off(site: Site, page: Page) -> None:
    attrs = (
        'data-endpoint="/e/collect" data-auto="false" data-track-outbound="false"'
        ' data-track-downloads="false" data-track-errors="false"'
    )
    body = (
        f'<a id="out" href="{site.other_origin}/x">out</a><a id="pdf" href="a.pdf">pdf</a>'
        # Keep the page in place so that everything happens on it.
        "<script>document.addEventListener('click', e => e.preventDefault())</script>"
    )
    url = site.page("quiet", body, attrs=attrs)
    page.goto(url)
    page.evaluate(
        """() => {
            history.pushState({}, '', 'quiet/next');
            location.hash = '#/route';
            setTimeout(() => { throw new Error('unreported'); });
        }"""
    )
    page.click("#out")
    page.click("#pdf")
    site.flush(page)
    assert site.events() == []

    page.evaluate("skopos('pageview')")  # the manual page view of data-auto="false"
    (view,) = site.wait(type="pageView")
    assert view["url"] == site.url("quiet/next#/route")


def _assert_sends_nothing(site: Site, page: Page, signal: str) -> None:
    """A page that respects DNT/GPC stays silent, while a control page in the same browser
    without data-respect-dnt is tracked (so the silence is the option's doing)."""
    body = (
        f'<a id="out" href="{site.other_origin}/x">out</a>'
        "<script>document.addEventListener('click', e => e.preventDefault())</script>"
    )
    page.goto(
        site.page("private", body, attrs='data-endpoint="/e/collect" data-respect-dnt="true"')
    )
    assert page.evaluate(signal) is True  # the browser really sends the signal
    page.evaluate(
        """() => {
            skopos('event', 'signup');
            skopos('pageview');
            history.pushState({}, '', 'private/next');
            setTimeout(() => { throw new Error('unreported'); });
        }"""
    )
    page.click("#out")
    page.goto(site.page("control"))  # leaving: no exit either
    site.wait(type="pageView")
    site.flush(page)
    assert urls(site.events()) == [site.url("control")]


def test_do_not_track_sends_nothing(playwright: Playwright, site: Site, tmp_path: Path) -> None:
    # The real browser setting ("Send a Do Not Track request"), through a profile.
    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps({"enable_do_not_track": True}))
    context = playwright.chromium.launch_persistent_context(profile, **launch_options())
    try:
        _assert_sends_nothing(site, context.new_page(), "navigator.doNotTrack === '1'")
    finally:
        context.close()


def test_global_privacy_control_sends_nothing(context: BrowserContext, site: Site) -> None:
    # Chromium has no GPC setting yet; define the property as GPC browsers (Firefox, Brave)
    # expose it, before any page script runs.
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    )
    _assert_sends_nothing(site, context.new_page(), "navigator.globalPrivacyControl === true")


# --------------------------------------------------------------------------------------------
# Privacy and transport


def test_no_cookies_no_storage_no_other_hosts(context: BrowserContext, site: Site) -> None:
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    body = '<button id="b" data-skopos-event="tap">tap</button>'
    page.goto(site.page("private", body, head=STUB))
    page.click("#b")
    page.evaluate(
        """() => {
            history.pushState({}, '', 'private/2');
            skopos('event', 'custom', {k: 'v'});
            setTimeout(() => { throw new Error('x'); });
        }"""
    )
    site.wait(type="jsError")
    site.flush(page)

    assert context.cookies() == []
    storage = page.evaluate(
        """async () => [document.cookie, localStorage.length, sessionStorage.length,
                        (await indexedDB.databases()).length]"""
    )
    assert storage == ["", 0, 0, 0]
    assert requested
    assert all(url.startswith(site.origin + "/") for url in requested), requested
    assert {post.content_type for post in site.posts()} == {"text/plain"}


def test_fetch_fallback_without_send_beacon(context: BrowserContext, site: Site) -> None:
    # Browsers without sendBeacon: the only browser API removed in this suite.
    context.add_init_script("delete Navigator.prototype.sendBeacon")
    page = context.new_page()
    # The host app's own cookie must not ride along (credentials: "omit").
    url = site.page(headers={"Set-Cookie": "host_session=abc; Path=/"})
    page.goto(url)
    assert page.evaluate("typeof navigator.sendBeacon") == "undefined"
    site.wait(type="pageView")
    page.evaluate("skopos('event', 'via-fetch', {ok: true})")
    site.wait(name="via-fetch")

    assert [c["name"] for c in context.cookies()] == ["host_session"]
    for post in site.posts():
        assert post.content_type == "text/plain"
        assert post.cookie == ""


def test_failures_never_reach_the_page(context: BrowserContext, site: Site) -> None:
    # Without sendBeacon every event goes through fetch, whose failure is a rejected promise:
    # left unhandled, it would surface in the page (and be reported as a jsError, and fail...).
    context.add_init_script("delete Navigator.prototype.sendBeacon")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    watch = (
        "<script>window.seen = [];"
        "addEventListener('error', e => seen.push(e.message));"
        "addEventListener('unhandledrejection', e => seen.push(String(e.reason)));</script>"
    )
    with socket.socket() as probe:  # a loopback port that nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = site.page(head=watch, attrs=f'data-endpoint="http://127.0.0.1:{closed}/e"')
    with page.expect_event("requestfailed"):
        page.goto(url)
    with page.expect_event("requestfailed"):
        page.evaluate("skopos('event', 'lost')")
    page.wait_for_timeout(100)
    assert page.evaluate("seen") == []
    assert errors == []
    # The page's own history errors still reach the page: only our code is guarded.
    thrown = page.evaluate(
        """() => {
            try { history.pushState({}, '', 'http://other.invalid/'); }
            catch (e) { return e.name; }
        }"""
    )
    assert thrown == "SecurityError"


def test_client_hints_are_asked_for_only_when_the_site_opts_in(site: Site, page: Page) -> None:
    # Chromium answers getHighEntropyValues; headless desktop Chromium's model is "", so no
    # clientHints travel, but the first page view waits for the answer and is still sent.
    page.add_init_script(
        """(() => {
            const proto = NavigatorUAData.prototype;
            const real = proto.getHighEntropyValues;
            window.__asked = [];
            proto.getHighEntropyValues = function (hints) {
                window.__asked.push(hints);
                return real.call(this, hints).then(v => ({...v, model: 'Pixel Tablet'}));
            };
        })();"""
    )
    page.goto(site.page("hinted", attrs='data-endpoint="/e/collect" data-client-hints="true"'))
    (view,) = site.wait(type="pageView")
    assert view["clientHints"] == {"model": "Pixel Tablet"}
    assert page.evaluate("window.__asked") == [["model"]]
    page.goto(site.page("plain"))
    views = site.wait(2, type="pageView")
    assert "clientHints" not in views[1]
