/*! skopos.js | Skopos browser client | MIT */
/*
 * Privacy-first analytics for Skopos: page views, custom events, JS errors, time on page,
 * outbound links and downloads. No cookies, no storage, no identifiers, no third parties: each
 * request carries only the JSON below, POSTed to your own server.
 *
 * Install (the first line is optional: it lets the page call skopos() before this script runs):
 *   <script>window.skopos=window.skopos||function(){(window.skopos.q=window.skopos.q||[]).push(arguments)}</script>
 *   <script defer src="/skopos.js" data-endpoint="/api/event"></script>
 *
 * Attributes of this <script> tag:
 *   data-endpoint="/api/event"    where events are POSTed (default "/api/event")
 *   data-auto="false"             no automatic page views and no history/hash tracking;
 *                                 send them with skopos('pageview')
 *   data-respect-dnt="true"       send nothing at all when navigator.doNotTrack is "1" or
 *                                 navigator.globalPrivacyControl is true
 *   data-track-outbound="false"   no "outbound" click events
 *   data-track-downloads="false"  no "download" click events
 *   data-track-errors="false"     no "jsError" events
 *   data-client-hints="true"      ask the browser for its device model (a high-entropy client
 *                                 hint, Chromium only) and send it as clientHints.model, so
 *                                 tablets are told from phones; off unless the site opts in
 *
 * JavaScript API:
 *   skopos('event', name, data)   custom event; data (optional, a flat object) is its customData
 *   skopos('pageview')            page view of the current URL, even if it was already counted
 * Markup: a click on <button data-skopos-event="signup" data-skopos-event-plan="pro"> sends the
 *   custom event "signup" with customData {plan: "pro"} (keys are the attribute suffixes as
 *   written, lower case).
 *
 * What is sent (every event also has url, screenWidth, screenHeight and language):
 *   pageView    name = location.pathname, referrer = document.referrer on the first page view,
 *               then the previous page's URL. Sent on load and on history.pushState/replaceState,
 *               popstate and hashchange, but only when the URL changed: a back/forward that fires
 *               both popstate and hashchange counts once, replaceState with the same URL never.
 *               Hash routing: only fragments starting with "#/" or "#!" are routes; a plain
 *               "#section" anchor is the same page.
 *   custom      skopos('event') and data-skopos-event clicks; and automatically "exit"
 *               {duration}: the seconds the page was visible, sent once per page view when the
 *               page is hidden or left, or when an SPA route change starts the next page view
 *               (the Skopos Dashboard reads it for engagement and leaves it out of bounce).
 *   click       "outbound" {url}: click or middle click on a link to another host;
 *               "download" {filename, url}: same, for a download attribute or a file extension
 *               below (a download wins over outbound, so one click sends one of the two).
 *   jsError     errorMessage and stackTrace of uncaught errors and unhandled rejections; each
 *               message+stack once, at most 10 per page load. Failed resource loads are ignored.
 *
 * Transport: navigator.sendBeacon with a text/plain body (a CORS "simple" request: no preflight,
 * even for an endpoint on another origin), else fetch with keepalive and credentials "omit".
 * Nothing here may ever throw into the page: every entry point is guarded.
 */
(function (w, d, n) {
  'use strict';
  try {
    var api = w.skopos;
    if (api && api.loaded) return; // included twice: the first copy already tracks everything

    // currentScript is only set while this script first runs; read the configuration now.
    var script = d.currentScript;
    var attr = function (key) {
      return script ? script.getAttribute('data-' + key) : null;
    };
    var queue = (api && api.q) || [];
    var endpoint = attr('endpoint') || '/api/event';
    var noop = function () {};

    if (
      attr('respect-dnt') == 'true' &&
      (n.doNotTrack == '1' || w.doNotTrack == '1' || n.globalPrivacyControl === true)
    ) {
      // Replace the stub so the page's calls go nowhere and its queue stops growing.
      noop.loaded = true;
      w.skopos = noop;
      return;
    }

    // Every listener runs inside a guard: an exception in an event listener would otherwise
    // reach the page's error handlers (and our own jsError tracking).
    var on = function (target, type, fn, capture) {
      target.addEventListener(
        type,
        function (e) {
          try {
            fn(e);
          } catch (x) {}
        },
        capture
      );
    };

    var send = function (type, name, extra) {
      try {
        var body = {
          type: type,
          name: name,
          url: location.href,
          screenWidth: screen.width,
          screenHeight: screen.height,
          language: n.language
        };
        for (var k in extra) body[k] = extra[k];
        if (model) body.clientHints = { model: model };
        var json = JSON.stringify(body);
        // sendBeacon returns false when the browser refuses to queue it (e.g. too large).
        if (!(n.sendBeacon && n.sendBeacon(endpoint, new Blob([json], { type: 'text/plain' })))) {
          // The catch matters: a network failure would otherwise be an unhandledrejection,
          // which we would report, which could fail again: a loop.
          if (w.fetch) {
            fetch(endpoint, {
              method: 'POST',
              body: json,
              keepalive: true,
              credentials: 'omit',
              headers: { 'Content-Type': 'text/plain' }
            }).catch(noop);
          }
        }
      } catch (x) {}
    };

    var model; // the device model, when the site opts in to high-entropy client hints
    var hinted; // a promise settled once the model is known (or cannot be)
    if (attr('client-hints') == 'true' && n.userAgentData && n.userAgentData.getHighEntropyValues) {
      hinted = n.userAgentData
        .getHighEntropyValues(['model'])
        .then(function (values) {
          model = values.model || undefined;
        })
        .catch(noop);
    }

    var event = function (name, data) {
      if (typeof name == 'string' && name) {
        send('custom', name, data && typeof data == 'object' ? { customData: data } : {});
      }
    };

    // ---- Page views and engagement -------------------------------------------------------
    var lastKey; // routeKey() of the current page view: the dedupe that stops double counts
    var pageUrl; // location.href of the current page view (referrer of the next one)
    var pageOpen = false; // a page view was sent and its exit event was not
    var visibleMs; // visible time of the current page view, without the running stretch
    var visibleSince; // Date.now() when the running visible stretch began; 0 while hidden

    // The URL minus any fragment that is not a route ("#/..." or "#!..."), so jumping to an
    // in-page anchor is not a new page view but a hash-router navigation is.
    var routeKey = function () {
      var href = location.href;
      var i = href.indexOf('#');
      return i < 0 || /^#[/!]/.test(href.slice(i)) ? href : href.slice(0, i);
    };

    var endPage = function () {
      if (pageOpen) {
        pageOpen = false;
        if (visibleSince) visibleMs += Date.now() - visibleSince;
        send('custom', 'exit', {
          url: pageUrl,
          customData: { duration: Math.max(0, Math.round(visibleMs / 1000)) }
        });
      }
    };

    var pageview = function (force) {
      var key = routeKey();
      if (force === true || key != lastKey) {
        endPage();
        send('pageView', location.pathname, { referrer: pageUrl == null ? d.referrer : pageUrl });
        lastKey = key;
        pageUrl = location.href;
        pageOpen = true;
        visibleMs = 0;
        visibleSince = d.visibilityState == 'hidden' ? 0 : Date.now();
      }
    };

    on(d, 'visibilitychange', function () {
      if (d.visibilityState == 'hidden') endPage();
      else if (pageOpen && !visibleSince) visibleSince = Date.now();
    });
    // visibilitychange is the last reliable moment on mobile (app switch, tab discard);
    // pagehide covers browsers that skip it on unload. Both fire when a page is left or
    // closed: endPage() sends only once.
    on(w, 'pagehide', endPage);

    if (attr('auto') != 'false') {
      ['pushState', 'replaceState'].forEach(function (method) {
        var original = history[method];
        if (original) {
          history[method] = function () {
            // Errors of the original (e.g. a cross-origin URL) are the page's and must reach it.
            var result = original.apply(this, arguments);
            try {
              pageview();
            } catch (x) {}
            return result;
          };
        }
      });
      // Fragment changes fire popstate too in current browsers; hashchange is for older ones.
      // Both may fire for one navigation: the routeKey() dedupe makes that one page view.
      on(w, 'popstate', pageview);
      on(w, 'hashchange', pageview);
      // Back/forward cache: the page is shown again without reloading, so count it again.
      on(w, 'pageshow', function (e) {
        if (e.persisted) {
          lastKey = null;
          pageview();
        }
      });
      // A prerendered page is counted when the user actually navigates to it.
      if (d.prerendering) on(d, 'prerenderingchange', pageview);
      else if (hinted) hinted.then(function () {
        try {
          pageview(); // the first page view carries the model: it decides the session's device
        } catch (x) {}
      });
      else pageview();
    }

    // ---- Clicks: markup events, outbound links, downloads --------------------------------
    var trackOutbound = attr('track-outbound') != 'false';
    var trackDownloads = attr('track-downloads') != 'false';
    var downloadExt =
      /\.(7z|apk|avi|bz2|csv|deb|dmg|docx?|epub|exe|gz|iso|jar|key|mkv|mov|mp[34]|msi|odp|ods|odt|pdf|pkg|pptx?|rar|rpm|rtf|tar|tgz|wav|xlsx?|xz|zip)$/i;

    var onClick = function (e) {
      var target = e.target;
      // auxclick also fires for the right button; only a middle click opens a link.
      if (!target || !target.closest || (e.type == 'auxclick' && e.button != 1)) return;
      var tagged = e.type == 'click' && target.closest('[data-skopos-event]');
      if (tagged) {
        var data = {};
        var attrs = tagged.attributes;
        for (var i = 0; i < attrs.length; i++) {
          var m = /^data-skopos-event-(.+)/.exec(attrs[i].name);
          if (m) data[m[1]] = attrs[i].value;
        }
        event(tagged.getAttribute('data-skopos-event'), data);
      }
      // SVG <a> elements have no protocol/host: the test below skips them.
      var link = target.closest('a[href]');
      if (link && /^https?:$/.test(link.protocol)) {
        if (trackDownloads && (link.hasAttribute('download') || downloadExt.test(link.pathname))) {
          var file = link.getAttribute('download') || link.pathname.split('/').pop();
          send('click', 'download', { customData: { filename: file, url: link.href } });
        } else if (trackOutbound && link.host != location.host) {
          send('click', 'outbound', { customData: { url: link.href } });
        }
      }
    };
    // Capture phase: a page that stops propagation of its clicks must not hide them from us.
    on(d, 'click', onClick, true);
    on(d, 'auxclick', onClick, true);

    // ---- JavaScript errors -----------------------------------------------------------------
    if (attr('track-errors') != 'false') {
      var reported = 0;
      var seen = {};
      var report = function (message, stack) {
        message = String(message).slice(0, 1000);
        stack = String(stack || '').slice(0, 5000);
        var key = message + '\n' + stack; // always contains "\n": never an Object.prototype name
        if (reported < 10 && !seen[key]) {
          seen[key] = ++reported;
          send('jsError', 'jsError', { errorMessage: message, stackTrace: stack });
        }
      };
      // A failed <img>/<script> load fires a non-bubbling event at its element, so this
      // bubble-phase listener on window only ever sees script errors.
      on(w, 'error', function (e) {
        var error = e.error;
        report(
          e.message || (error && error.message) || 'Error',
          (error && error.stack) || (e.filename ? e.filename + ':' + e.lineno + ':' + e.colno : '')
        );
      });
      on(w, 'unhandledrejection', function (e) {
        var reason = e.reason;
        report((reason && reason.message) || reason, reason && reason.stack);
      });
    }

    // ---- Public function, then the calls queued before we loaded ---------------------------
    api = function (command, name, data) {
      try {
        if (command == 'event') event(name, data);
        else if (command == 'pageview') pageview(true);
      } catch (x) {}
    };
    api.loaded = true;
    w.skopos = api;
    for (var i = 0; i < queue.length; i++) api.apply(null, queue[i]);
  } catch (x) {}
})(window, document, navigator);
