from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("auth/register/", apis.RegisterApi.as_view(), name="auth-register"),
    path("auth/login/", apis.LoginApi.as_view(), name="auth-login"),
    path("auth/refresh/", apis.RefreshApi.as_view(), name="auth-refresh"),
    path("auth/logout/", apis.LogoutApi.as_view(), name="auth-logout"),
    path("auth/password/reset/", apis.PasswordResetApi.as_view(), name="auth-password-reset"),
    path("auth/password/reset/confirm/", apis.PasswordResetConfirmApi.as_view(),
         name="auth-password-reset-confirm"),
    path("auth/email/verify/", apis.EmailVerifyApi.as_view(), name="auth-email-verify"),
    path("me/", apis.MeApi.as_view(), name="me"),
    path("me/avatar/", apis.AvatarApi.as_view(), name="me-avatar"),
    path("me/email/", apis.EmailChangeApi.as_view(), name="me-email"),
    path("me/email/verification/", apis.EmailVerificationApi.as_view(),
         name="me-email-verification"),
    path("me/password/", apis.PasswordChangeApi.as_view(), name="me-password"),
    path("me/deactivate/", apis.DeactivateApi.as_view(), name="me-deactivate"),
    path("me/delete/", apis.DeleteApi.as_view(), name="me-delete"),
    path("me/phone/code/", apis.PhoneCodeApi.as_view(), name="me-phone-code"),
    path("me/phone/verify/", apis.PhoneVerifyApi.as_view(), name="me-phone-verify"),
    path("users/<int:user_id>/", apis.UserDetailApi.as_view(), name="user-detail"),
]
