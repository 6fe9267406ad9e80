"""A side effects module that fails at import, as one reading a setting the deployment lacks."""

from django.core.exceptions import ImproperlyConfigured

raise ImproperlyConfigured("CRM_API_KEY is not set: add it to the settings to send to the CRM")
