from django import forms

from example_project.signups.models import Account


class SignupForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["email"]
