import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from core.checks import demo_admin_password_check
from core.models import User
from core.services import DEMO_ADMIN_USERNAME, demo_admin_ensure


@pytest.mark.django_db
def test_seed_demo_creates_the_staff_account_once(capsys):
    call_command("seed_demo")
    call_command("seed_demo")

    user = User.objects.get(username=DEMO_ADMIN_USERNAME)
    assert user.is_staff
    assert user.check_password("admin_password")
    assert "Kept existing" in capsys.readouterr().out


@pytest.mark.django_db
def test_deploy_check_fails_while_the_demo_admin_has_its_published_password():
    demo_admin_ensure()

    assert [e.id for e in demo_admin_password_check()] == ["core.E001"]
    with pytest.raises(SystemCheckError, match="core.E001"):
        call_command("check", "--deploy")


@pytest.mark.django_db
def test_deploy_check_passes_once_the_password_is_changed():
    user, _ = demo_admin_ensure()
    user.set_password("something-only-we-know-71")
    user.save()

    assert demo_admin_password_check() == []


@pytest.mark.django_db
def test_deploy_check_passes_without_the_demo_account():
    assert demo_admin_password_check() == []
