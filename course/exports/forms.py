"""The HR export's filter form (a POST with a CSRF token, like every form outside LTI)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from course.statuses import STATUSES


class ExportFilterForm(FlaskForm):
    """Platform (admins only), course, date range and status; then preview or download."""

    # Choices are checked by `resolve_filters`, which names the bad value in plain words.
    platform = SelectField("Platform", choices=[SelectChoice("", "All platforms")], validate_choice=False)
    context = SelectField("Course (LMS context)", choices=[SelectChoice("", "All courses")], validate_choice=False)
    date_from = DateField(
        "From (completed or first opened)", validators=[Optional()], format="%Y-%m-%d",
        description="YYYY-MM-DD, UTC; the first day included.",
    )
    date_to = DateField(
        "To (completed or first opened)", validators=[Optional()], format="%Y-%m-%d",
        description="YYYY-MM-DD, UTC; the last day included.",
    )
    status = SelectField(
        "Status",
        choices=[SelectChoice("", "Any status"), *(SelectChoice(status) for status in STATUSES)],
        validate_choice=False,
    )
    preview = SubmitField("Preview")
    csv = SubmitField("Download CSV")
    xlsx = SubmitField("Download XLSX")
    json = SubmitField("Download JSON")

    def chosen_format(self) -> str | None:
        """The download asked for, or None for a preview."""
        for name in ("csv", "xlsx", "json"):
            if getattr(self, name).data:
                return name
        return None

    def given(self) -> dict[str, str]:
        """The filters as text, the shape every channel hands to `resolve_filters`."""
        return {
            "platform": self.platform.data or "",
            "context": self.context.data or "",
            "from": self.date_from.data.isoformat() if self.date_from.data else "",
            "to": self.date_to.data.isoformat() if self.date_to.data else "",
            "status": self.status.data or "",
        }
