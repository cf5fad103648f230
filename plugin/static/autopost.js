// Post the signed answer back to the LMS at once, as Deep Linking 2.0 expects (form_post).
document.getElementById("autopost").submit();
