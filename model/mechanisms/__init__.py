"""The mechanisms of a tick, one module per step of
:data:`TICK_PLAN` (at the end of this module) and named as the step, with the helpers each step
alone uses beside it:

========================  ===================================================================
step                      module (helpers)
========================  ===================================================================
``posting``               :mod:`.posting`
``traffic``               :mod:`.traffic` (:mod:`.appeal`: what a post earns; :mod:`.channel_choice`)
``cascade``               :mod:`.cascade` (the kernel is :mod:`weishang.kernels.cascade`)
``payments``              :mod:`.payments`
``risk``                  :mod:`.risk` (engine, learned scorer, injected fraud, everyday payments)
``settlement``            :mod:`.settlement` (:mod:`.fx`: cross-border exchange rates)
``governance``            :mod:`.governance`
``community``             :mod:`.community` (:mod:`.customers`: who bought from whom)
``inventory``             :mod:`.inventory`
``books``                 :mod:`.books`
``adaptation``            :mod:`.adaptation` (the Mesa merchants' decisions)
``aggregation``           :mod:`.aggregation` (:mod:`.diagnostics`: per-merchant diagnostics)
========================  ===================================================================

What every step shares (the config, the codes, the merchants' and users' tables, the plan and
its state protocol) lives one level up, in :mod:`weishang.model`.
"""

from .adaptation import Adaptation
from .aggregation import Aggregation
from .books import Books
from .cascade import Cascade
from .community import Community
from .governance import Governance
from .inventory import Inventory
from .payments import Payments
from .posting import Posting
from .risk.engine import RiskEngine
from .settlement import Settlement
from .traffic import Traffic

#: The tick, in order: merchants post, the platform allocates traffic, the cascade spreads,
#: orders are paid, risk is scored, payments settle, governance acts, communities and stock and
#: books update, merchants decide (Mesa), and the tick is reduced for the recorder. The
#: ``ticks`` table's columns follow this order (:mod:`weishang.model.columns`).
TICK_PLAN = (Posting, Traffic, Cascade, Payments, RiskEngine, Settlement, Governance, Community, Inventory, Books,
             Adaptation, Aggregation)
