"""Forms for signing in and out (Flask-WTF adds the CSRF token to each)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    """Username and password for staff who work outside the LMS."""

    username = StringField(
        "Username", validators=[DataRequired(), Length(max=80)], render_kw={"autocomplete": "username"}
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=512)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()
    submit = SubmitField("Sign in")


class LogoutForm(FlaskForm):
    """Signing out is a POST with a CSRF token, so no link or image can sign someone out."""

    submit = SubmitField("Sign out")
