// evoforge dashboard: live updates. On each server-sent "update" event, every element with a
// data-part attribute (a URL of this server) is re-fetched and its content replaced by the
// server-rendered HTML fragment (escaped by the server). No inline script, no eval.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-events");
  var badge = document.getElementById("live");
  if (!url || !window.EventSource) { return; }
  var version = null;
  var busy = false;
  var again = false;

  function setState(state, text) {
    if (!badge) { return; }
    badge.setAttribute("data-state", state);
    badge.textContent = text;
  }

  function sameOrigin(href) {
    try { return new URL(href, window.location.href).origin === window.location.origin; }
    catch (e) { return false; }
  }

  function refresh(newVersion) {
    if (busy) { again = true; return; }
    busy = true;
    var parts = Array.prototype.slice.call(document.querySelectorAll("[data-part]"));
    var jobs = parts.map(function (el) {
      var href = el.getAttribute("data-part");
      if (!href || href.charAt(0) !== "/" || !sameOrigin(href)) { return Promise.resolve(); }
      return fetch(href, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; } });
    });
    Promise.all(jobs).then(function () {
      body.setAttribute("data-version", String(newVersion));
      setState("on", "live · updated " + new Date().toLocaleTimeString());
    }, function () {
      setState("error", "live · update failed");
    }).then(function () {
      busy = false;
      if (again) { again = false; refresh(version); }
    });
  }

  var source = new EventSource(url);
  source.addEventListener("open", function () { setState("on", "live"); });
  source.addEventListener("error", function () { setState("off", "reconnecting…"); });
  source.addEventListener("update", function (ev) {
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (version === null) {  // the state the page was rendered from (or newer)
      version = data.version;
      body.setAttribute("data-version", String(version));
      var first = document.querySelector("[data-version]:not(body)");
      if (first && first.getAttribute("data-version") === String(version)) {
        setState("on", "live");
        return;
      }
    }
    if (data.version !== version) {
      version = data.version;
      refresh(version);
    } else {
      setState("on", "live");
    }
  });
}());
