// Reload when the tool's registration window says it is done (Dynamic Registration §3.6).
window.addEventListener("message", function (event) {
  if (event.data && event.data.subject === "org.imsglobal.lti.close") window.location.reload();
});
