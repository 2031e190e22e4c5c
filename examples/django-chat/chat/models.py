from django.conf import settings
from django.db import models


class Note(models.Model):
    """What NotesConsumer saves: a line of text and who wrote it."""

    text = models.CharField(max_length=200)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
