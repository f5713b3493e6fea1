"""Console pages for people: log in and out, password, personal API tokens."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.common.errors import ApplicationError
from apps.common.views import never_stored

from . import selectors, services
from .forms import TokenCreateForm
from .models import User
from .permissions import scope_of

View = Callable[..., HttpResponse]


def current_user(request: HttpRequest) -> User:
    """The signed-in person (views behind ``login_required`` only)."""
    return cast(User, request.user)


def no_role_page(request: HttpRequest, *, status: int = 403) -> HttpResponse:
    """What a signed-in person without any role sees: whom to ask, and nothing else."""
    context = {"admins": selectors.admin_contacts(), "section": ""}
    return render(request, "accounts/no_role.html", context, status=status)


def role_required(view: View) -> View:
    """Signed in *and* holding some role; outsiders get the no-role page, never data."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not scope_of(request.user).has_any_role:
            return no_role_page(request)
        return view(request, *args, **kwargs)

    return wrapper


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("password_change_done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "registration/password_change_done.html"


def _tokens_page(
    request: HttpRequest, form: TokenCreateForm, *, issued: str = "", status: int = 200
) -> HttpResponse:
    context: dict[str, Any] = {
        "section": "tokens",
        "form": form,
        "tokens": selectors.token_list(user=request.user),
        "issued": issued,
        "now": timezone.now(),
    }
    response = render(request, "accounts/tokens.html", context, status=status)
    if issued:
        never_stored(response)  # the plaintext is on this response only
    return response


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """List the person's tokens; creating one shows its plaintext once, on this response."""
    if request.method != "POST":
        return _tokens_page(request, TokenCreateForm())
    form = TokenCreateForm(request.POST)
    if form.is_valid():
        try:
            _token, issued = services.token_create(
                user=current_user(request),
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
            )
        except ApplicationError as exc:
            for field, errors in exc.details.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
            if not exc.details:
                form.add_error(None, exc.message)
        else:
            return _tokens_page(request, TokenCreateForm(), issued=issued.plaintext, status=201)
    return _tokens_page(request, form, status=400)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = selectors.token_get(user=request.user, token_id=token_id)
    try:
        services.token_revoke(actor=current_user(request), token=token)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Revoked the token “{token.name}”. It stops working at once.")
    return redirect("tokens")
