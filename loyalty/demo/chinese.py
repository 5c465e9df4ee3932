"""The Chinese demo (`loyalty demo seed --locale zh_CN`): a shop in Shanghai selling
stationery, apparel and homeware in renminbi (CNY, in fen), one point per yuan."""

from __future__ import annotations

from loyalty.demo.locale import DemoExperiment, DemoLocale, DemoMember, DemoNames, PastOrder
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.tiers.definitions import TierDefinition

MEMBERS = (
    DemoMember(
        "cust_1001",
        "王芳",
        "wang.fang@example.com",
        (
            PastOrder(340, "notebook-a5", "stationery", 5900),
            PastOrder(200, "qipao-silk-m", "apparel", 45800),
            PastOrder(3, "teapot-yixing", "home", 26800),
        ),
        birthday_today=True,
    ),
    DemoMember(
        "cust_1002",
        "李伟",
        "li.wei@example.com",
        (
            PastOrder(40, "down-jacket-l", "apparel", 79900),
            PastOrder(10, "rice-cooker", "home", 59900),
        ),
    ),
    DemoMember(
        "cust_1003",
        "张敏",
        "zhang.min@example.com",
        (PastOrder(1, "brush-pen", "stationery", 6800),),
        referred_by="cust_1001",
    ),
)

NAMES = DemoNames(
    spend_rule="每消费1元积1分",
    apparel_rule="服饰类商品双倍积分",
    first_order_rule="首单奖励",
    signup_rule="注册有礼",
    review_rule="商品评价奖励",
    welcome_automation="新会员欢迎",
    win_back_automation="90天未消费召回",
    buy_again_automation="回购提醒",
    expiring_automation="积分30天内到期提醒",
)

# A benefit's `name` is what the shop's app shows for it; the checkout acts on its code.
TIERS = (
    TierDefinition(
        code="silver",
        name="银卡会员",
        rank=1,
        threshold=0,
        retention_months=12,
        benefits=({"code": "birthday_gift", "params": {"name": "生日礼遇", "points": 200}},),
    ),
    TierDefinition(
        code="gold",
        name="金卡会员",
        rank=2,
        threshold=1500,
        retention_months=12,
        benefits=(
            {"code": "birthday_gift", "params": {"name": "生日礼遇", "points": 500}},
            {"code": "free_shipping", "params": {"name": "满99元包邮", "min_amount": 9900}},
        ),
    ),
    TierDefinition(
        code="diamond",
        name="钻石会员",
        rank=3,
        threshold=6000,
        retention_months=12,
        benefits=(
            {"code": "birthday_gift", "params": {"name": "生日礼遇", "points": 1000}},
            {"code": "free_shipping", "params": {"name": "全场包邮"}},
            {"code": "points_multiplier", "params": {"name": "积分1.5倍", "factor": "1.5"}},
        ),
    ),
)

REWARDS = (
    RewardDefinition(
        name="20元无门槛优惠券",
        description="下次下单立减20元，无最低消费要求。",
        kind=RewardKind.FIXED_DISCOUNT,
        cost_points=2000,
        value_amount=2000,
    ),
    RewardDefinition(
        name="帆布购物袋",
        description="环保帆布袋一个，限量25个，兑完即止。",
        kind=RewardKind.PRODUCT,
        cost_points=1500,
        stock=25,
    ),
    RewardDefinition(
        name="全场8折券",
        description="全场商品享8折优惠，每位会员限兑一张。",
        kind=RewardKind.COUPON,
        cost_points=3000,
        per_member_limit=1,
        codes=tuple(f"ZHE80-{n:04d}" for n in range(1, 51)),
    ),
    RewardDefinition(
        name="双十一提前购资格",
        description="钻石会员专享：双十一大促提前一天开抢。",
        kind=RewardKind.COUPON,
        cost_points=600,
        min_tier="diamond",
    ),
)

EXPERIMENT = DemoExperiment(
    rule_name="满300元奖励300积分",
    name="大额订单奖励",
    hypothesis="单笔订单满300元奖励300积分，会员会更常下单，新增订单足以抵消积分成本。",
    min_amount=30000,
    apparel=(("tee", 9900), ("hoodie", 25900), ("cap", 6900), ("jacket", 59900)),
)

CHINESE = DemoLocale(
    code="zh_CN",
    currency="CNY",
    time_zone="Asia/Shanghai",
    members=MEMBERS,
    names=NAMES,
    tiers=TIERS,
    rewards=REWARDS,
    shopper_order_sizes=(8800, 16800, 32800),
    experiment=EXPERIMENT,
)
