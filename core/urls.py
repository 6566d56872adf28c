"""URL plumbing shared by the apps' API urls."""


class IdConverter:
    """A database id: 1-18 digits, so it always fits a bigint."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)
