"""Placeholder: filled in by the identity work in progress."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
PUBLIC_ROUTES: set[str] = set()
