"""Sockets end with their credentials: a token revoked or expired, a session
signed out, an account deactivated, deleted, or given or stripped of staff.

These are receivers, not service calls, on purpose: credentials end in code
the hub does not own (knox deletes an expired token while authenticating, the
admin saves users, Django signs sessions out), and a rule that every path must
remember to call would be broken by the first one that forgets. What they do
happens after commit, through the same publisher as the events.
"""

from django.contrib.auth import get_user_model, user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from knox.models import AuthToken

from realtime.services import credentials_end_on_commit

User = get_user_model()
_ACCESS_FIELDS = ("is_active", "is_staff")


@receiver(post_delete, sender=AuthToken, dispatch_uid="realtime.token_deleted")
def _token_deleted(sender, instance, **kwargs):
    credentials_end_on_commit(instance.user_id, token=instance.digest, reason="This token was revoked or expired.")


@receiver(user_logged_out, dispatch_uid="realtime.session_ended")
def _session_ended(sender, request, user, **kwargs):
    session_key = getattr(request, "session", None) and request.session.session_key
    if user is not None and session_key:
        credentials_end_on_commit(user.pk, session=session_key, reason="You signed out.")


@receiver(pre_save, sender=User, dispatch_uid="realtime.user_access_before")
def _access_before(sender, instance, update_fields=None, **kwargs):
    if instance.pk is None or (update_fields is not None and not set(_ACCESS_FIELDS) & set(update_fields)):
        instance._access_before = None
        return
    instance._access_before = User.objects.filter(pk=instance.pk).values_list(*_ACCESS_FIELDS).first()


@receiver(post_save, sender=User, dispatch_uid="realtime.user_access_after")
def _access_after(sender, instance, created, **kwargs):
    before = getattr(instance, "_access_before", None)
    if before is not None and before != tuple(getattr(instance, name) for name in _ACCESS_FIELDS):
        credentials_end_on_commit(instance.pk, reason="Your account's access changed; sign in again.")


@receiver(post_delete, sender=User, dispatch_uid="realtime.user_deleted")
def _user_deleted(sender, instance, **kwargs):
    credentials_end_on_commit(instance.pk, reason="Your account was deleted.")
