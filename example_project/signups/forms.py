from django import forms

from example_project.signups.models import Account


class SignupForm(forms.ModelForm):
    plan = forms.ChoiceField(choices=Account.Plan.choices, required=False)

    class Meta:
        model = Account
        fields = ["email", "plan"]

    def clean_plan(self) -> str:
        """Optional in the JSON API: an account without a plan starts on the free one."""
        return self.cleaned_data["plan"] or Account.Plan.FREE
