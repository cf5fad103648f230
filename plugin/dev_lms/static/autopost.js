// Post the id_token to the tool at once, as a real LMS does (form_post response mode).
document.getElementById("autopost").submit();
