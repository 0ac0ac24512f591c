// Live refresh: every data-refresh-ms the page is fetched again and each
// element marked data-live (with an id) is replaced by its new version.
// Nothing is refreshed while focus is inside a live element, and the
// "Live refresh" box turns it off. Pages are complete without this script.
(function () {
  "use strict";
  var ms = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 3000;
  var self = document.body.getAttribute("data-self") || location.pathname + location.search;
  // A form's answer (its address is the form's target) shows the page
  // the form is on: reloading it must not post again.
  if (self !== location.pathname + location.search && history.replaceState) {
    history.replaceState(null, "", self);
  }
  var box = document.getElementById("live");
  var busy = false;
  function refresh() {
    if (busy || (box && !box.checked) || document.hidden) return;
    var active = document.activeElement;
    if (active && active.closest && active.closest("[data-live]")) return;
    busy = true;
    fetch(self, { headers: { "X-Console-Refresh": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.innerHTML = fresh.innerHTML;
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  setInterval(refresh, ms);
})();
