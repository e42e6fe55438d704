"""Vigil's admin site: role-based access, the KPI scorecard and the predicted-risk badges on the home page."""

from __future__ import annotations

from django import forms
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm


class VigilAdminAuthenticationForm(AdminAuthenticationForm):
    """People with a human role may log in; service accounts never (they use the API)."""

    def confirm_login_allowed(self, user):
        if not user.is_active or not getattr(user, "is_human_operator", False):
            raise forms.ValidationError("This account has no role that may use the admin.", code="invalid_login")


class VigilAdminSite(AdminSite):
    site_header = "Vigil · AI governance operations"
    site_title = "Vigil"
    index_title = "Governance operations"
    index_template = "admin/vigil_index.html"
    login_form = VigilAdminAuthenticationForm

    def has_permission(self, request) -> bool:
        return request.user.is_active and getattr(request.user, "is_human_operator", False)

    def index(self, request, extra_context=None):
        from governance.selectors_predictive import predictive_dashboard
        from governance.services.kpis import kpi_report

        extra_context = {
            **(extra_context or {}),
            "kpi_report": kpi_report(),
            "predictive": predictive_dashboard(user=request.user),
        }
        return super().index(request, extra_context)
