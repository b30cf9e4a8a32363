from collections.abc import Mapping

from rest_framework import serializers


class StrictInputMixin:
    """Refuse keys the serializer does not know, so a typo is an error, not a
    no-op; and a number where text belongs, which DRF would turn into text.
    Reported together with whatever else is wrong in the body."""

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)
        errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}
        for name, field in self.fields.items():
            value = data.get(name)
            if isinstance(field, serializers.CharField) and value is not None and not isinstance(value, str):
                errors[name] = ["Not a string."]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors or not isinstance(exc.detail, dict):
                raise
            raise serializers.ValidationError(exc.detail | errors) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value


class UserSerializer(serializers.Serializer):
    """An account as the API shows it. Fields declared rather than read off the
    model: a ModelSerializer builds its fields again for every instance, and
    this one is in every token check's answer."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
    email_verified = serializers.BooleanField(read_only=True, help_text="Whether the account proved its email.")
    first_name = serializers.CharField(read_only=True, allow_blank=True)
    last_name = serializers.CharField(read_only=True, allow_blank=True)
    is_admin = serializers.BooleanField(read_only=True)
    date_joined = serializers.DateTimeField(read_only=True)


class RegisterSerializer(StrictInputMixin, serializers.Serializer):
    username = serializers.RegexField(
        r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "Use only letters, digits and @/./+/-/_ characters."},
    )
    password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)
    email = serializers.EmailField(max_length=254)
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")


class VerifySerializer(StrictInputMixin, serializers.Serializer):
    code = serializers.CharField(max_length=100, help_text="The code from the verification mail.")


class TokenRequestSerializer(StrictInputMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`.")
    expires_at = serializers.DateTimeField(allow_null=True)


class TokenCheckSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    user = UserSerializer()
    is_admin = serializers.BooleanField()
    expires_at = serializers.DateTimeField(allow_null=True)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Invalid input only: field name -> messages.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
