"""The model's vocabulary: every coded category, named once.

Arrays hold the integer codes (``int8``/``int16``); tables write the lowercase labels
(``Channel.label(Channel.SEARCH) == "search"``). A code's value is its position in its label
tuple (``Channel.labels()``), which is also the order of columns and plots.

A code is a plain ``int`` by construction (``type(Channel.SEARCH) is int``), not an ``IntEnum``
member: CuPy takes a scalar operand only if its type is exactly ``int``/``float``/``bool`` or a
NumPy scalar type, and refused ``channel == Channel.MOMENTS`` with an ``IntEnum`` at the first
tick of the first GPU run. A code class iterates over its codes (``for c in Channel``) and
counts them (``len(Channel)``) as an enum would.
"""

from __future__ import annotations

from collections.abc import Iterator

#: ticks are days
TICKS_PER_YEAR = 365
#: cascade levels: 1 friends, 2 friends of sharers, 3 strangers reached by tools
LEVELS = (1, 2, 3)


class _CodeType(type):
    """The metaclass of a code class: its upper-case int attributes are its codes, 0, 1, 2, ...
    in order of definition; iterating the class gives them as plain ints."""

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict) -> "_CodeType":
        cls = super().__new__(mcls, name, bases, namespace)
        names = tuple(key for key, value in namespace.items() if key.isupper() and type(value) is int)
        if tuple(namespace[key] for key in names) != tuple(range(len(names))):
            raise TypeError(f"{name}: codes must be 0, 1, 2, ... in order of definition")
        cls._names = names
        return cls

    def __iter__(cls) -> Iterator[int]:
        return iter(range(len(cls._names)))

    def __len__(cls) -> int:
        return len(cls._names)


class Code(metaclass=_CodeType):
    """An integer code with a lowercase label for tables. Never instantiated."""

    _names: tuple[str, ...] = ()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every code's name (``"MOMENTS"``), in code order."""
        return cls._names

    @classmethod
    def label(cls, code: int) -> str:
        """The table label of ``code`` (``Channel.label(0) == "moments"``)."""
        return cls._names[code].lower()

    @classmethod
    def labels(cls) -> tuple[str, ...]:
        """Every label, in code order (index = code)."""
        return tuple(name.lower() for name in cls._names)


class Channel(Code):
    """Where a post goes (SPEC section 1; see :mod:`weishang.model.mechanisms.traffic`)."""

    MOMENTS = 0
    OFFICIAL_ACCOUNT = 1
    SEARCH = 2
    GROUPS = 3
    LIVE_STREAM = 4
    EXTERNAL_LINK = 5
    VIDEO_ACCOUNT = 6


#: the one set of "friend" channels of level 1 (SPEC sections 1-2: friends buy directly at 12.7%,
#: level 1 reaches 150-200 friends): the posts a merchant shows its own friends as a personal
#: recommendation. Not the official account (its followers are friends too, but get a brand
#: broadcast), not groups (their members are not the merchant's friends). Both level-1 friend
#: figures, ``conversion_friend_rec`` and ``reach_l1``, are measured on these channels.
FRIEND_RECOMMENDATION = (Channel.MOMENTS, Channel.LIVE_STREAM, Channel.EXTERNAL_LINK)


class PaymentScenario(Code):
    """How an order is paid (SPEC section 3): three official scenarios, or outside WeChat."""

    QR = 0
    MINI_PROGRAM = 1
    CROSS_BORDER = 2
    OFF_PLATFORM = 3


#: the official scenarios, the ones the risk engine screens
OFFICIAL_SCENARIOS = (PaymentScenario.QR, PaymentScenario.MINI_PROGRAM, PaymentScenario.CROSS_BORDER)


class Style(Code):
    """A merchant's marketing style: quality content posts, plain ad links, induced sharing."""

    CONTENT = 0
    AD = 1
    INDUCEMENT = 2


class Compliance(Code):
    """A merchant's compliance type (SPEC section 6 names the two violations)."""

    COMPLIANT = 0
    NO_BRAND = 1
    EXAGGERATED = 2


class Certification(Code):
    """Certification level: uncertified (no brand qualification), verified, certified (enterprise)."""

    NONE = 0
    VERIFIED = 1
    CERTIFIED = 2


class Provider(Code):
    """Third-party service provider a merchant runs through (SPEC section 8)."""

    NONE = 0
    WEIMOB = 1
    YOUZAN = 2


class ExitReason(Code):
    """Why a merchant left; ``ACTIVE`` while it has not (written as null)."""

    ACTIVE = 0
    UNPROFITABLE = 1
    REMOVED = 2
