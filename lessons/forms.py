"""The lesson editor's form: front-matter fields as fields, the body as Markdown."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional


class LessonForm(FlaskForm):
    """Every field the lesson schema knows; the schema itself has the last word."""

    slug = StringField("Lesson id", validators=[Optional(), Length(max=100)],
                       description="Lowercase words joined by hyphens, starting with the module id.")
    title = StringField("Title", validators=[DataRequired(), Length(max=120)])
    module = SelectField("Module", validators=[DataRequired()])
    # InputRequired, not DataRequired: the latter would replace "Not a valid integer value." with
    # "This field is required." when a trainer types a word, and would refuse 0 as missing.
    order = IntegerField("Position in the module", validators=[InputRequired(), NumberRange(min=1, max=99)])
    estimated_minutes = IntegerField("Estimated minutes", validators=[InputRequired(), NumberRange(min=1, max=60)])
    objectives = TextAreaField("Objectives (one per line)", validators=[DataRequired(), Length(max=1500)])
    body = TextAreaField("Lesson text (Markdown)", validators=[DataRequired(), Length(max=60_000)])
    revision = HiddenField()
    save = SubmitField("Save draft")
    preview = SubmitField("Preview")
    publish = SubmitField("Publish")

