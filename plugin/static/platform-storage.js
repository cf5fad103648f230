// LTI Client Side postMessages (platform storage): keep the login state in the LMS's
// storage frame, and read it back at launch, for browsers that drop Rebound's cookies.
(function () {
  "use strict";
  var TIMEOUT_MS = 2000;

  function storageFrame(target) {
    if (!target || target === "_parent") return window.parent;
    try { return window.parent.frames[target] || window.parent; } catch (e) { return window.parent; }
  }

  function ask(frame, origin, message, onReply, onFail) {
    var id = message.message_id = "rb-" + Math.random().toString(36).slice(2);
    var done = false;
    function listener(event) {
      if (event.origin !== origin || !event.data || event.data.message_id !== id) return;
      done = true;
      window.removeEventListener("message", listener);
      if (event.data.error) onFail(); else onReply(event.data);
    }
    window.addEventListener("message", listener);
    try { frame.postMessage(message, origin); } catch (e) { done = true; onFail(); return; }
    setTimeout(function () { if (!done) { window.removeEventListener("message", listener); onFail(); } }, TIMEOUT_MS);
  }

  var login = document.getElementById("lti-storage-login");
  if (login) {
    var go = function () { window.location.replace(login.dataset.authUrl); };
    ask(storageFrame(login.dataset.storageTarget), login.dataset.platformOrigin,
        { subject: "lti.put_data", key: "state_" + login.dataset.state, value: login.dataset.state }, go, go);
  }

  var verify = document.getElementById("lti-storage-verify");
  if (verify) {
    var form = document.getElementById("lti-storage-verify-form");
    ask(storageFrame(verify.dataset.storageTarget), verify.dataset.platformOrigin,
        { subject: "lti.get_data", key: verify.dataset.stateKey },
        function (reply) { form.elements.state.value = reply.value || ""; form.submit(); },
        function () { document.getElementById("lti-new-window").hidden = false; });
  }
})();
