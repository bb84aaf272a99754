// stockd console: small progressive enhancements. Every page works without
// this script; it adds live figures on the overview (server-sent events), search as you type,
// and jumping from a rules problem to its field in the editor.
(function () {
  "use strict";

  function fetchFragment(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        // A redirect means the session ended: stop refreshing quietly.
        if (!r.ok || r.redirected) { throw new Error("stale"); }
        return r.text();
      });
  }

  // Overview: the server pushes the live section (charts and health) as
  // server-sent events; the browser reconnects when a stream ends. A stream
  // refused (the session ended) closes for good.
  var live = document.querySelector("[data-stream]");
  if (live && window.EventSource) {
    var source = new EventSource(live.getAttribute("data-stream"));
    source.addEventListener("live", function (e) {
      live.innerHTML = e.data;
      live.setAttribute("data-updated", String(Date.now()));
    });
  }

  // Stock: search as you type (the form still submits without script).
  var search = document.querySelector("[data-live-search]");
  if (search) {
    var pending = null, seq = 0;
    search.addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        var mine = ++seq;
        var q = search.value.trim();
        var url = search.getAttribute("data-live-search") + "?fragment=1&q=" + encodeURIComponent(q);
        fetchFragment(url).then(function (html) {
          if (mine !== seq) { return; }
          var results = document.getElementById("results");
          if (results) { results.outerHTML = html; }
          history.replaceState(null, "", "/stock?q=" + encodeURIComponent(q));
        }).catch(function () {});
      }, 200);
    });
  }

  // Rules: clicking a problem selects its field's key in the editor.
  var problems = document.getElementById("problems");
  var editor = document.getElementById("rules");
  if (problems && editor) {
    problems.addEventListener("click", function (e) {
      var li = e.target.closest("li[data-field]");
      if (!li) { return; }
      var path = li.getAttribute("data-field").split(/[.\[\]]/).filter(Boolean);
      var key = path.length ? path[path.length - 1] : "";
      var at = key ? editor.value.indexOf("\"" + key + "\"") : -1;
      editor.focus();
      if (at >= 0) { editor.setSelectionRange(at, at + key.length + 2); }
    });
  }

  // Forms: no double submits while the server works (e.g. a preview).
  document.addEventListener("submit", function (e) {
    var button = e.target.querySelector("button");
    if (button) { setTimeout(function () { button.disabled = true; }, 0); }
  });
})();
