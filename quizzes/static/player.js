// Move focus to the new step (or to what happened), so screen readers start there.
(function () {
  "use strict";
  var target = document.querySelector("[data-focus]");
  if (target) target.focus();
})();
