"""Accounts API: thin views over accounts.services and accounts.selectors."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.validators import UnicodeUsernameValidator
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenRefreshView

from showoff.drf import (
    InputSerializer,
    ScopedEmailThrottle,
    StrictJsonTypes,
    client_ip,
    object_id,
)

from . import selectors, services
from .authentication import revoke_access_token
from .models import User

PHONE_REGEX = r"^\+[1-9][0-9]{7,14}$"
PHONE_HELP = "International format, for example +14155550123."


# --- serializers --------------------------------------------------------------------------


class PublicUserSerializer(serializers.ModelSerializer):
    """What anyone may see of an account: never email, phone or login details."""

    avatar_url = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "display_name", "bio", "avatar_url", "date_joined"]
        read_only_fields = fields

    def get_avatar_url(self, user: User) -> str | None:
        return _absolute(self.context.get("request"), services.avatar_url(user))


class ProfileSerializer(PublicUserSerializer):
    """A public profile: the public fields, the counts, and how the viewer relates to it."""

    followers_count = serializers.IntegerField()
    following_count = serializers.IntegerField()
    posts_count = serializers.IntegerField()
    followed_by_me = serializers.BooleanField(help_text="Whether the signed-in viewer follows "
                                              "this user (false when signed out).")

    class Meta(PublicUserSerializer.Meta):
        fields = [*PublicUserSerializer.Meta.fields, "followers_count", "following_count",
                  "posts_count", "followed_by_me"]
        read_only_fields = fields


class MeSerializer(PublicUserSerializer):
    """The signed-in user's own profile, private fields included."""

    email_verified = serializers.SerializerMethodField()
    phone_verified = serializers.SerializerMethodField()

    class Meta(PublicUserSerializer.Meta):
        fields = [*PublicUserSerializer.Meta.fields, "email", "email_verified", "phone",
                  "phone_verified"]
        read_only_fields = fields

    def get_email_verified(self, user: User) -> bool:
        return user.email_verified_at is not None

    def get_phone_verified(self, user: User) -> bool:
        return user.phone_verified_at is not None


class RegisterInputSerializer(InputSerializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()],
                                     required=False, help_text="Optional when an email is "
                                     "given (then derived from it).")
    email = serializers.EmailField(required=False, allow_null=True, allow_blank=True)
    password = serializers.CharField(write_only=True, max_length=128,
                                     style={"input_type": "password"})
    display_name = serializers.CharField(required=False, allow_blank=True, max_length=80)


class LoginInputSerializer(InputSerializer):
    login = serializers.CharField(max_length=254, help_text="Username or email address.")
    password = serializers.CharField(write_only=True, max_length=128)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class LoginOutputSerializer(TokenPairSerializer):
    user = MeSerializer()


class LogoutInputSerializer(InputSerializer):
    refresh = serializers.CharField(max_length=2000)


class ProfileUpdateInputSerializer(InputSerializer):
    display_name = serializers.CharField(required=False, allow_blank=True, max_length=80)
    bio = serializers.CharField(required=False, allow_blank=True, max_length=500)


class AvatarInputSerializer(InputSerializer):
    avatar = serializers.FileField(help_text="JPEG, PNG, WebP or GIF, at most "
                                   "ACCOUNTS_AVATAR_MAX_BYTES and 4096 pixels a side.")


class AvatarOutputSerializer(serializers.Serializer):
    avatar_url = serializers.CharField(allow_null=True)


class EmailChangeInputSerializer(InputSerializer):
    new_email = serializers.EmailField()
    password = serializers.CharField(write_only=True, max_length=128)


class PasswordChangeInputSerializer(InputSerializer):
    old_password = serializers.CharField(write_only=True, max_length=128)
    new_password = serializers.CharField(write_only=True, max_length=128)


class PasswordConfirmInputSerializer(InputSerializer):
    password = serializers.CharField(write_only=True, max_length=128)


class PhoneCodeInputSerializer(InputSerializer):
    phone = serializers.RegexField(PHONE_REGEX, help_text=PHONE_HELP, error_messages={
        "invalid": "Enter the phone number in international format, for example "
                   "+14155550123."})


class PhoneCodeOutputSerializer(serializers.Serializer):
    phone = serializers.CharField()
    expires_at = serializers.DateTimeField()


class PhoneVerifyInputSerializer(PhoneCodeInputSerializer):
    code = serializers.RegexField(r"^[0-9]{6}$", help_text="The 6-digit code from the SMS.",
                                  error_messages={"invalid": "The code is 6 digits."})


def _absolute(request, url: str | None) -> str | None:
    """Absolute URLs for clients (events and the database keep the site-relative path)."""
    if url is None or request is None:
        return url
    return request.build_absolute_uri(url)


class PasswordResetInputSerializer(InputSerializer):
    email = serializers.EmailField(max_length=254)


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class TokenInputSerializer(InputSerializer):
    token = serializers.CharField(max_length=200, help_text="The token from the emailed link.")


class PasswordResetConfirmInputSerializer(TokenInputSerializer):
    new_password = serializers.CharField(write_only=True, max_length=128,
                                         style={"input_type": "password"})


class EmailVerificationOutputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    expires_at = serializers.DateTimeField()


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- registration, login, tokens ----------------------------------------------------------


class RegisterApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_scope = "register"

    @extend_schema(tags=["auth"], request=RegisterInputSerializer,
                   responses={201: MeSerializer})
    def post(self, request):
        data = _valid(RegisterInputSerializer, request)
        user = services.user_register(
            username=data.get("username"), password=data["password"],
            email=data.get("email") or None, display_name=data.get("display_name", ""),
            ip=client_ip(request),
        )
        return Response(MeSerializer(user, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class LoginApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_scope = "login"

    @extend_schema(tags=["auth"], request=LoginInputSerializer,
                   responses={200: LoginOutputSerializer})
    def post(self, request):
        data = _valid(LoginInputSerializer, request)
        user, tokens = services.user_login(
            login=data["login"], password=data["password"], ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        return Response({"access": tokens.access, "refresh": tokens.refresh,
                         "user": MeSerializer(user, context={"request": request}).data})


class RefreshInputSerializer(StrictJsonTypes, TokenRefreshSerializer):
    pass


class RefreshApi(TokenRefreshView):
    """Exchange a refresh token for a new pair; the old refresh token is revoked (rotation)."""

    throttle_scope = "login"
    serializer_class = RefreshInputSerializer

    @extend_schema(tags=["auth"])
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class LogoutApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(tags=["auth"], request=LogoutInputSerializer,
                   responses={204: OpenApiResponse(description="Signed out.")})
    def post(self, request):
        """Revoke the refresh token and, when sent, the access token of this request."""
        data = _valid(LogoutInputSerializer, request)
        try:
            RefreshToken(data["refresh"]).blacklist()
        except TokenError as exc:
            raise InvalidToken({"detail": f"This refresh token cannot be used: {exc}"})
        if request.auth is not None and hasattr(request.auth, "payload"):
            revoke_access_token(request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- account recovery: password reset and email verification ------------------------------

# The default throttles (per client, per IP scope) plus one per email address.
_RECOVERY_THROTTLES = [*api_settings.DEFAULT_THROTTLE_CLASSES, ScopedEmailThrottle]


class PasswordResetApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_scope = "recovery"
    throttle_email_scope = "recovery_email"
    throttle_classes = _RECOVERY_THROTTLES

    @staticmethod
    def throttle_email(request) -> str | None:
        return request.data.get("email") if hasattr(request.data, "get") else None

    @extend_schema(tags=["auth"], request=PasswordResetInputSerializer,
                   responses={202: DetailSerializer})
    def post(self, request):
        """Email a password reset link to the account using this address, if there is one.

        The answer is the same whether or not an account uses the address (it never tells
        who has an account); the link works once, within ACCOUNTS_PASSWORD_RESET_TTL_SECONDS.
        Throttled per client IP and per address."""
        data = _valid(PasswordResetInputSerializer, request)
        services.password_reset_request(email=data["email"], ip=client_ip(request))
        minutes = max(1, settings.ACCOUNTS_PASSWORD_RESET_TTL_SECONDS // 60)
        return Response({"detail": "If an account uses this email address, a link to reset "
                         f"its password is on its way. The link works once, within {minutes} "
                         "minutes."}, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_scope = "recovery_token"

    @extend_schema(tags=["auth"], request=PasswordResetConfirmInputSerializer,
                   responses={204: OpenApiResponse(description="Password changed; every "
                                                   "session of the account is signed out.")})
    def post(self, request):
        """Choose a new password with the token of an emailed reset link.

        The token works once; an expired, used or superseded token (or one issued before
        the password or email last changed) is a 400 saying which. Every existing session,
        access and refresh token of the account stops working; sign in with the new
        password."""
        data = _valid(PasswordResetConfirmInputSerializer, request)
        services.user_password_reset(token=data["token"], new_password=data["new_password"],
                                     ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EmailVerifyApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_scope = "recovery_token"

    @extend_schema(tags=["auth"], request=TokenInputSerializer,
                   responses={204: OpenApiResponse(description="Email address verified.")})
    def post(self, request):
        """Verify the account's email address with the token of an emailed link (no sign-in
        needed: the link may be opened on another device)."""
        data = _valid(TokenInputSerializer, request)
        services.user_email_verify(token=data["token"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class EmailVerificationApi(APIView):
    throttle_scope = "recovery"
    throttle_email_scope = "recovery_email"
    throttle_classes = _RECOVERY_THROTTLES

    @staticmethod
    def throttle_email(request) -> str | None:
        return request.user.email

    @extend_schema(tags=["account"], request=None,
                   responses={202: EmailVerificationOutputSerializer})
    def post(self, request):
        """Send a new verification link to your email address (older links stop working)."""
        row = services.email_verification_request(user=request.user, ip=client_ip(request))
        return Response({"email": row.email, "expires_at": row.expires_at},
                        status=status.HTTP_202_ACCEPTED)


# --- profile --------------------------------------------------------------------------------


class MeApi(APIView):
    @extend_schema(tags=["profile"], responses={200: MeSerializer})
    def get(self, request):
        return Response(MeSerializer(request.user, context={"request": request}).data)

    @extend_schema(tags=["profile"], request=ProfileUpdateInputSerializer,
                   responses={200: MeSerializer})
    def patch(self, request):
        data = _valid(ProfileUpdateInputSerializer, request)
        services.user_profile_update(user=request.user, **data)
        return Response(MeSerializer(request.user, context={"request": request}).data)


class AvatarApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(tags=["profile"], request={"multipart/form-data": AvatarInputSerializer},
                   responses={200: AvatarOutputSerializer})
    def put(self, request):
        data = _valid(AvatarInputSerializer, request)
        url = services.user_avatar_set(user=request.user, avatar=data["avatar"])
        return Response({"avatar_url": _absolute(request, url)})

    @extend_schema(tags=["profile"], request=None, responses={200: AvatarOutputSerializer})
    def delete(self, request):
        services.user_avatar_set(user=request.user, avatar=None)
        return Response({"avatar_url": None})


class UserDetailApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(tags=["profile"], responses={200: ProfileSerializer})
    def get(self, request, user_id: int):
        """A public profile with its counts. A user in a block with the viewer (either way)
        is answered as missing."""
        from posts.selectors import post_count_by_author
        from social import selectors as social_selectors

        try:
            user = selectors.user_public_get(user_id=object_id(user_id, "user"))
        except User.DoesNotExist:
            raise NotFound("No such user.")
        if social_selectors.blocked_between(request.user, user):
            raise NotFound("No such user.")
        counts = social_selectors.counts_get(user_id=user.pk)
        user.followers_count, user.following_count = counts.followers, counts.following
        user.posts_count = post_count_by_author(author_id=user.pk)
        user.followed_by_me = social_selectors.is_following(follower=request.user,
                                                            followee_id=user.pk)
        return Response(ProfileSerializer(user, context={"request": request}).data)


# --- account changes ----------------------------------------------------------------------


class EmailChangeApi(APIView):
    @extend_schema(tags=["account"], request=EmailChangeInputSerializer,
                   responses={200: MeSerializer})
    def post(self, request):
        data = _valid(EmailChangeInputSerializer, request)
        services.user_email_change(user=request.user, password=data["password"],
                                   new_email=data["new_email"], ip=client_ip(request))
        return Response(MeSerializer(request.user, context={"request": request}).data)


class PasswordChangeApi(APIView):
    @extend_schema(tags=["account"], request=PasswordChangeInputSerializer,
                   responses={200: TokenPairSerializer})
    def post(self, request):
        """Change the password. Every other session is signed out; use the returned tokens."""
        data = _valid(PasswordChangeInputSerializer, request)
        tokens = services.user_password_change(user=request.user,
                                               old_password=data["old_password"],
                                               new_password=data["new_password"])
        return Response({"access": tokens.access, "refresh": tokens.refresh})


class DeactivateApi(APIView):
    @extend_schema(tags=["account"], request=PasswordConfirmInputSerializer,
                   responses={204: OpenApiResponse(description="Deactivated; signed out.")})
    def post(self, request):
        """Deactivate the account: hidden and signed out everywhere (an operator can restore
        it)."""
        data = _valid(PasswordConfirmInputSerializer, request)
        services.user_deactivate(user=request.user, password=data["password"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeleteApi(APIView):
    @extend_schema(tags=["account"], request=PasswordConfirmInputSerializer,
                   responses={204: OpenApiResponse(description="Deleted.")})
    def post(self, request):
        """Delete the account for good: personal data is removed (docs/api-accounts-posts.md)."""
        data = _valid(PasswordConfirmInputSerializer, request)
        services.user_delete(user=request.user, password=data["password"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class PhoneCodeApi(APIView):
    throttle_scope = "otp"

    @extend_schema(tags=["account"], request=PhoneCodeInputSerializer,
                   responses={202: PhoneCodeOutputSerializer})
    def post(self, request):
        """Text a 6-digit code to the phone (rate-limited per phone and per network address)."""
        data = _valid(PhoneCodeInputSerializer, request)
        pv = services.phone_code_request(user=request.user, phone=data["phone"],
                                         ip=client_ip(request))
        return Response({"phone": pv.phone, "expires_at": pv.expires_at},
                        status=status.HTTP_202_ACCEPTED)


class PhoneVerifyApi(APIView):
    throttle_scope = "otp"

    @extend_schema(tags=["account"], request=PhoneVerifyInputSerializer,
                   responses={200: MeSerializer})
    def post(self, request):
        """Check the code; the phone becomes the account's verified number."""
        data = _valid(PhoneVerifyInputSerializer, request)
        user = services.phone_code_verify(user=request.user, phone=data["phone"],
                                          code=data["code"])
        return Response(MeSerializer(user, context={"request": request}).data)
