// Tell the server the lesson is still open and visible; the server decides what time counts.
(function () {
  "use strict";
  var lesson = document.getElementById("lesson");
  var token = document.querySelector('meta[name="csrf-token"]');
  if (!lesson || !token || !window.fetch) return;
  setInterval(function () {
    if (document.visibilityState !== "visible") return;
    fetch(lesson.dataset.heartbeat, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token.content }
    }).catch(function () {});
  }, 30000);
})();
