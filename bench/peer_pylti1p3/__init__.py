"""The peer: a minimal LTI 1.3 tool built on pylti1p3, doing the launch Rebound does."""
