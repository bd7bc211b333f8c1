// jobrelay dashboard: refreshes the live part of the page in place, so that
// counts and states stay current without a full reload. Everything works
// without it.
(function () {
  "use strict";
  var body = document.body;
  var every = parseInt(body.getAttribute("data-refresh") || "0", 10);

  // A flash message belongs to the redirect that showed it; drop it from
  // the address so that a reload does not show it again.
  var url = new URL(window.location.href);
  if (url.searchParams.has("flash")) {
    url.searchParams.delete("flash");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  if (!every) return;

  var toggle = document.getElementById("auto-refresh");
  var busy = false;

  function refresh() {
    if (busy || document.hidden || (toggle && !toggle.checked)) return;
    var active = document.activeElement;
    if (active && active.closest && active.closest("form")) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live) return;
        var flash = live.querySelector(".flash");
        if (flash) flash.remove();
        live.innerHTML = fresh.innerHTML;
        var stale = live.querySelector(".flash");
        if (stale) stale.remove();
        document.title = doc.title;
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, every);
})();
