"""The model prices page: the negotiated overrides over the catalogue, and adding one."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError

from . import selectors, services
from .forms import ModelPriceForm


@role_required
def prices(request: HttpRequest) -> HttpResponse:
    """GET: the overrides, newest first. POST (admins): add one."""
    user = current_user(request)
    is_admin = scope_of(user).is_admin
    form = ModelPriceForm(request.POST if request.method == "POST" and is_admin else None)
    status = 200
    if request.method == "POST":
        if not is_admin:
            messages.error(request, "Only admins set model prices.")
            return redirect("costs:prices")
        if form.is_valid():
            try:
                price = services.model_price_set(actor=user, **form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"{price} saved; calls from then on are priced with it.")
                return redirect("costs:prices")
        status = 400
    context = {
        "section": "costs",
        "prices": selectors.model_prices()[: selectors.PRICES_SHOWN],
        "is_admin": is_admin,
        "form": form,
    }
    return render(request, "costs/prices.html", context, status=status)
