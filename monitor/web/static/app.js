// balance-monitor dashboard: times in the browser's zone, and the page's content refreshed
// within a few seconds of a poll or of a silence or ack written (it asks /api/v1/sources
// whether a poll happened or control_version moved, then
// fetches the same page and swaps <main>). No third-party code; the page works without it.
"use strict";
(function () {
  var EVERY = 2000;
  var fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit"
  });
  var clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var precise = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit"
  });
  var day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.textContent = fmt.format(d); }
    });
    root.querySelectorAll("tspan[data-t]").forEach(function (el) {
      var d = new Date(parseFloat(el.getAttribute("data-t")) * 1000);
      var span = parseFloat(el.getAttribute("data-span"));
      var f = span > 86400 ? day : span > 3600 ? clock : precise;
      if (!isNaN(d)) { el.textContent = f.format(d); }
    });
  }
  var seen = null;
  var busy = false;
  function stamp(body) {
    return JSON.stringify([body.control_version, body.sources.map(function (s) {
      return [s.name, s.polls, s.last_poll_at];
    })]);
  }
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch("/api/v1/sources", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) { return null; }
        var now = stamp(body);
        var changed = seen !== null && now !== seen;
        seen = now;
        document.getElementById("live").hidden = false;
        if (!changed) { return null; }
        return fetch(location.href, { credentials: "same-origin", cache: "no-store" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (!html) { return; }
            var doc = new DOMParser().parseFromString(html, "text/html");
            var fresh = doc.getElementById("main");
            var main = document.getElementById("main");
            if (fresh && main) {
              main.replaceWith(document.adoptNode(fresh));
              localize(document.getElementById("main"));
              document.body.setAttribute("data-refreshed", String(Date.now()));
            }
          });
      })
      .catch(function () { document.getElementById("live").hidden = true; })
      .then(function () { busy = false; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    refresh();
    setInterval(refresh, EVERY);
  });
})();
