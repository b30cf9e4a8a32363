from django.core.management.base import BaseCommand

from core.services import DEMO_ADMIN_USERNAME, demo_admin_ensure


class Command(BaseCommand):
    help = "Create the demo staff account used by the API walk-through (safe to run again)."

    def handle(self, *args, **options):
        _, created = demo_admin_ensure()
        verb = "Created" if created else "Kept existing"
        self.stdout.write(f"{verb} staff account {DEMO_ADMIN_USERNAME!r}.")
