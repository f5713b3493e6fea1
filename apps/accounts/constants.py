from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    APPROVER = "approver", "Approver"
    FINANCE = "finance", "Finance"
    ADMIN = "admin", "Admin"
    AUDITOR = "auditor", "Auditor"
