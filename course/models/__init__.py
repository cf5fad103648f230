"""Every table Rebound keeps; importing this package registers them all on `Base.metadata`."""

from course.models.completion import CompletionRecord
from course.models.content import ContentDraft, ContentItem, ContentVersion
from course.models.exports import ExportRun
from course.models.outbox import GradeOutbox
from course.models.people import ApiToken, LocalAccount, LoginThrottle, User
from course.models.placements import Context, Placement
from course.models.progress import CaseAttempt, CaseStep, LessonProgress
from course.models.rosters import RosterMember
from course.models.tenants import Deployment, Platform

__all__ = [
    "ApiToken",
    "CaseAttempt",
    "CaseStep",
    "CompletionRecord",
    "ContentDraft",
    "ContentItem",
    "ContentVersion",
    "Context",
    "Deployment",
    "ExportRun",
    "GradeOutbox",
    "LessonProgress",
    "LocalAccount",
    "LoginThrottle",
    "Placement",
    "Platform",
    "RosterMember",
    "User",
]
