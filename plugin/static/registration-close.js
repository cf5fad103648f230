// LTI Dynamic Registration: tell the LMS the registration is finished (spec §3.6).
(function () {
  "use strict";
  (window.opener || window.parent).postMessage({ subject: "org.imsglobal.lti.close" }, "*");
})();
