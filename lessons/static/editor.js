// Live preview: the server renders with the learners' renderer and sanitiser.
(function () {
  "use strict";
  var form = document.getElementById("lesson-form");
  var preview = document.getElementById("live-preview");
  var token = document.querySelector('meta[name="csrf-token"]');
  if (!form || !preview || !token || !window.fetch) return;
  var body = form.elements.body;
  var timer = null;
  function refresh() {
    var data = new FormData();
    data.append("body", body.value);
    fetch(preview.dataset.url, {
      method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRFToken": token.content }
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (json) { if (json) preview.innerHTML = json.html; })
      .catch(function () {});
  }
  body.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refresh, 400); });
  refresh();
})();
