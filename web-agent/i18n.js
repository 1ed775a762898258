/*
 * Contact Hub — message catalogues for the agent console (zh-CN, zh-TW, en).
 *
 * window.I18N = { LANGS, LANG_NAMES, t(key, vars), tn(key, count, vars), has(key),
 *                 getLang(), setLang(lang), detectLang(list) }
 * Also exposes the global function t(key, vars).
 *
 * t() returns plain text; callers put it into the page with textContent only.
 * Placeholders are written {name}. Plural forms: "key.one" / "key.other" (Intl.PluralRules);
 * Chinese has only "other".
 */
'use strict';

(function () {
  const LANGS = ['zh-CN', 'zh-TW', 'en'];
  // Each language is named in its own script, the same in every catalogue.
  const LANG_NAMES = { 'zh-CN': '简体中文', 'zh-TW': '繁體中文', en: 'English' };
  const STORAGE_KEY = 'contact-hub.lang';

  const en = {
    'app.name': 'Contact Hub',
    'app.title_login': 'Sign in · Contact Hub',
    'app.title_console': 'Agent console · Contact Hub',
    'console.title': 'Agent console',
    'lang.label': 'Language',

    'login.heading': 'Sign in',
    'login.subtitle': 'Use your Contact Hub account to open the agent console.',
    'login.username': 'Username',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.submitting': 'Signing in…',
    'login.required': 'Enter your username and password.',
    'login.error.invalid': 'Incorrect username or password.',
    'login.error.locked.one': 'Too many sign-in attempts. Try again in {secs} second.',
    'login.error.locked.other': 'Too many sign-in attempts. Try again in {secs} seconds.',
    'login.error.unlocked': 'You can try to sign in again now.',
    'login.session_expired': 'Your session has ended. Please sign in again.',
    'login.signed_out': 'You have signed out.',
    'login.footer': 'Contact Hub · open-source contact center',
    'login.hero.title': 'Every customer, every channel, one console.',
    'login.hero.text': 'Calls, email, fax and web chat arrive in one queue, with the customer’s history on screen before you say hello.',

    'error.network': 'Cannot reach the server. Check your network connection.',
    'error.generic': 'Something went wrong (error {code}).',
    'error.server': 'Server error: {message}',
    'error.code.forbidden': 'You are not allowed to do this.',
    'error.code.not_found': 'Not found.',
    'error.code.unauthorized': 'Your session has ended. Please sign in again.',
    'error.code.invalid_state': 'That state change is not allowed right now.',
    'error.code.rate_limited': 'Too many requests. Please wait a moment.',

    'header.logout': 'Sign out',
    'role.agent': 'Agent',
    'role.supervisor': 'Supervisor',
    'role.admin': 'Administrator',

    'state.label': 'Agent state',
    'state.timer_title': 'Time in current state',
    'state.available': 'Available',
    'state.not_ready': 'Not ready',
    'state.with_reason': '{state} · {reason}',
    'state.logged_out': 'Offline',
    'state.reserved': 'Reserved',
    'state.busy': 'Busy',
    'state.wrap_up': 'After-call work',
    'state.unknown': 'Loading state…',
    'state.offline_placeholder': 'Not connected',
    'state.error.not_connected': 'Not connected to the server; your state was not changed.',
    'state.error.timeout': 'The server did not confirm the state change.',
    'reason.break': 'Break',
    'reason.lunch': 'Lunch',
    'reason.meeting': 'Meeting',
    'reason.training': 'Training',
    'reason.admin': 'Admin work',
    'reason.rona': 'Missed offer',
    'reason.after_call_work': 'After-call work',

    'conn.connecting': 'Connecting…',
    'conn.connected': 'Connected',
    'conn.reconnecting': 'Reconnecting…',
    'conn.retry_in.one': 'Next attempt in {secs} second',
    'conn.retry_in.other': 'Next attempt in {secs} seconds',

    'work.title': 'My contacts',
    'work.empty': 'No contacts assigned — offers arrive here when you are Available',
    'contact.unknown_customer': 'Unknown customer',
    'contact.no_subject': '(no subject)',
    'contact.queue': 'Queue: {queue}',

    'search.label': 'Search customers',
    'search.placeholder': 'Search customers by name, phone number or email',
    'search.button': 'Search',
    'search.searching': 'Searching…',
    'search.count.one': '{count} customer found for “{q}”',
    'search.count.other': '{count} customers found for “{q}”',
    'search.none': 'No customers match “{q}”.',
    'search.none_hint': 'Try another spelling, the last digits of a phone number, or an email address.',
    'welcome.title': 'Find a customer',
    'welcome.text': 'Search by name, any phone number format or email address. The customer’s card opens here, and pops up by itself when a contact is offered to you.',

    'customer.back': 'Back to results',
    'customer.back_search': 'Back to search',
    'customer.loading': 'Loading customer…',
    'customer.not_found': 'This customer no longer exists.',
    'customer.details': 'Customer details',
    'customer.identities': 'Contact points',
    'customer.no_identities': 'No contact points on file',
    'customer.preferred_channel': 'Preferred channel',
    'customer.no_preference': 'No preference',
    'customer.language': 'Language',
    'customer.consent': 'Contact consent',
    'customer.since': 'Customer since',
    'customer.external_ref': 'Customer number',

    'kind.person': 'Person',
    'kind.company': 'Company',
    'tier.vip': 'VIP',
    'tier.important': 'Key account',
    'tier.ordinary': 'Standard',

    'consent.do_not_call': 'Do not call',
    'consent.do_not_email': 'Do not email',
    'consent.do_not_call_long': 'Do not call — no outbound calls',
    'consent.do_not_email_long': 'Do not email — no marketing or outbound email',
    'consent.none': 'No restrictions',

    'identity.phone': 'Phone',
    'identity.email': 'Email',
    'identity.fax': 'Fax',
    'identity.chat': 'Chat',

    'balance.title': 'Current balance',
    'balance.owed': 'Owed by customer',
    'balance.credit': 'Customer in credit',
    'balance.settled': 'Settled',

    'alerts.title': 'Alerts',
    'alert.document_expired': 'Document expired',
    'alert.document_expiring': 'Document expiring soon',
    'alert.document_expiry_suspicious': 'Suspicious document expiry date',
    'alert.balance_overdue': 'Overdue balance',
    'alert.date.document_expired': 'expired {date}',
    'alert.date.document_expiring': 'expires {date}',
    'alert.date.document_expiry_suspicious': 'expiry date on file: {date}',
    'alert.date.balance_overdue': 'due {date}',
    'alert.date.default': '{date}',
    'alert.days_ago.one': '{days} day ago',
    'alert.days_ago.other': '{days} days ago',
    'alert.in_days.one': 'in {days} day',
    'alert.in_days.other': 'in {days} days',
    'alert.today': 'today',
    'alert.view': 'View record',

    'records.title': 'Customer archive',
    'records.orders': 'Orders & contracts',
    'records.payments': 'Payments & receivables',
    'records.transactions': 'Transactions',
    'records.returns': 'Returns & discounts',
    'records.documents': 'Documents',
    'records.empty': 'No records in this category.',
    'col.reference': 'Reference',
    'col.description': 'Description',
    'col.type': 'Type',
    'col.amount': 'Amount',
    'col.status': 'Status',
    'col.date': 'Date',
    'col.issued': 'Issued',
    'col.expires': 'Expires',
    'payment.receivable': 'Receivable',
    'payment.received': 'Payment received',
    'expiry.expired': 'Expired',
    'expiry.suspicious': 'Check date',

    'status.open': 'Open',
    'status.new': 'New',
    'status.pending': 'Pending',
    'status.processing': 'Processing',
    'status.in_progress': 'In progress',
    'status.paid': 'Paid',
    'status.partially_paid': 'Partly paid',
    'status.partial': 'Partial',
    'status.due': 'Due',
    'status.overdue': 'Overdue',
    'status.closed': 'Closed',
    'status.resolved': 'Resolved',
    'status.completed': 'Completed',
    'status.complete': 'Complete',
    'status.cancelled': 'Cancelled',
    'status.canceled': 'Cancelled',
    'status.void': 'Void',
    'status.refunded': 'Refunded',
    'status.shipped': 'Shipped',
    'status.delivered': 'Delivered',
    'status.active': 'Active',
    'status.valid': 'Valid',
    'status.expired': 'Expired',
    'status.draft': 'Draft',
    'status.approved': 'Approved',
    'status.rejected': 'Rejected',
    'status.signed': 'Signed',
    'status.settled': 'Settled',
    'status.failed': 'Failed',
    'status.disputed': 'Disputed',

    'contacts.title': 'Recent contacts',
    'contacts.empty': 'No earlier contacts.',
    'direction.inbound': 'Inbound',
    'direction.outbound': 'Outbound',
    'cstate.queued': 'Queued',
    'cstate.offered': 'Offered',
    'cstate.connected': 'Connected',
    'cstate.wrap_up': 'Wrap-up',
    'cstate.closed': 'Closed',
    'cstate.abandoned': 'Abandoned',
    'cstate.failed': 'Failed',
    'channel.voice': 'Phone',
    'channel.email': 'Email',
    'channel.chat': 'Web chat',
    'channel.fax': 'Fax',
    'channel.callback': 'Callback',
    'channel.outbound': 'Outbound call',

    'cases.title': 'Open cases',
    'cases.empty': 'No open cases.',
    'notes.title': 'Notes',
    'notes.empty': 'No notes.',
    'toast.dismiss': 'Dismiss',
  };

  const zhCN = {
    'app.name': 'Contact Hub',
    'app.title_login': '登录 · Contact Hub',
    'app.title_console': '坐席工作台 · Contact Hub',
    'console.title': '坐席工作台',
    'lang.label': '语言',

    'login.heading': '登录',
    'login.subtitle': '使用 Contact Hub 账号登录坐席工作台。',
    'login.username': '用户名',
    'login.password': '密码',
    'login.submit': '登录',
    'login.submitting': '正在登录…',
    'login.required': '请输入用户名和密码。',
    'login.error.invalid': '用户名或密码错误。',
    'login.error.locked.other': '登录尝试次数过多，请 {secs} 秒后重试。',
    'login.error.unlocked': '现在可以重新登录了。',
    'login.session_expired': '会话已结束，请重新登录。',
    'login.signed_out': '您已退出登录。',
    'login.footer': 'Contact Hub · 开源联络中心',
    'login.hero.title': '每位客户、每个渠道，尽在一个工作台。',
    'login.hero.text': '电话、邮件、传真和网页在线咨询统一排队分配，接通前客户档案与历史记录即已弹屏。',

    'error.network': '无法连接服务器，请检查网络连接。',
    'error.generic': '操作失败（错误 {code}）。',
    'error.server': '服务器错误：{message}',
    'error.code.forbidden': '您没有执行此操作的权限。',
    'error.code.not_found': '未找到。',
    'error.code.unauthorized': '会话已结束，请重新登录。',
    'error.code.invalid_state': '当前不允许切换到该状态。',
    'error.code.rate_limited': '请求过于频繁，请稍候。',

    'header.logout': '退出登录',
    'role.agent': '坐席',
    'role.supervisor': '班长',
    'role.admin': '管理员',

    'state.label': '坐席状态',
    'state.timer_title': '当前状态持续时间',
    'state.available': '空闲',
    'state.not_ready': '示忙',
    'state.with_reason': '{state} · {reason}',
    'state.logged_out': '离线',
    'state.reserved': '预占',
    'state.busy': '通话/处理中',
    'state.wrap_up': '话后整理',
    'state.unknown': '正在获取状态…',
    'state.offline_placeholder': '未连接',
    'state.error.not_connected': '未连接服务器，状态未更改。',
    'state.error.timeout': '服务器未确认状态切换。',
    'reason.break': '小休',
    'reason.lunch': '用餐',
    'reason.meeting': '会议',
    'reason.training': '培训',
    'reason.admin': '事务处理',
    'reason.rona': '未应答',
    'reason.after_call_work': '话后整理',

    'conn.connecting': '正在连接…',
    'conn.connected': '已连接',
    'conn.reconnecting': '正在重连…',
    'conn.retry_in.other': '{secs} 秒后重试',

    'work.title': '我的会话',
    'work.empty': '暂无分配的会话——切换为“空闲”后，新的会话将显示在这里',
    'contact.unknown_customer': '未知客户',
    'contact.no_subject': '（无主题）',
    'contact.queue': '队列：{queue}',

    'search.label': '搜索客户',
    'search.placeholder': '按姓名、电话号码或邮箱搜索客户',
    'search.button': '搜索',
    'search.searching': '正在搜索…',
    'search.count.other': '找到 {count} 位与“{q}”匹配的客户',
    'search.none': '没有与“{q}”匹配的客户。',
    'search.none_hint': '可尝试其他写法、电话号码后几位或邮箱地址。',
    'welcome.title': '查找客户',
    'welcome.text': '可按姓名、任意格式的电话号码或邮箱搜索。客户卡片将显示在这里；有会话分配给您时会自动弹屏。',

    'customer.back': '返回搜索结果',
    'customer.back_search': '返回搜索',
    'customer.loading': '正在加载客户信息…',
    'customer.not_found': '该客户已不存在。',
    'customer.details': '客户信息',
    'customer.identities': '联系方式',
    'customer.no_identities': '暂无联系方式',
    'customer.preferred_channel': '首选渠道',
    'customer.no_preference': '无偏好',
    'customer.language': '语言',
    'customer.consent': '联系许可',
    'customer.since': '建档时间',
    'customer.external_ref': '客户编号',

    'kind.person': '个人',
    'kind.company': '企业',
    'tier.vip': 'VIP 客户',
    'tier.important': '重要客户',
    'tier.ordinary': '普通客户',

    'consent.do_not_call': '禁止致电',
    'consent.do_not_email': '禁止发邮件',
    'consent.do_not_call_long': '禁止致电——不得外呼',
    'consent.do_not_email_long': '禁止发邮件——不得发送营销或外发邮件',
    'consent.none': '无限制',

    'identity.phone': '电话',
    'identity.email': '邮箱',
    'identity.fax': '传真',
    'identity.chat': '在线咨询',

    'balance.title': '当前余额',
    'balance.owed': '客户欠款',
    'balance.credit': '客户预付/余额',
    'balance.settled': '已结清',

    'alerts.title': '提醒',
    'alert.document_expired': '证件已过期',
    'alert.document_expiring': '证件即将到期',
    'alert.document_expiry_suspicious': '证件有效期异常',
    'alert.balance_overdue': '存在逾期欠款',
    'alert.date.document_expired': '已于 {date} 过期',
    'alert.date.document_expiring': '将于 {date} 到期',
    'alert.date.document_expiry_suspicious': '登记的到期日：{date}',
    'alert.date.balance_overdue': '应付日期 {date}',
    'alert.date.default': '{date}',
    'alert.days_ago.other': '{days} 天前',
    'alert.in_days.other': '{days} 天后',
    'alert.today': '今天',
    'alert.view': '查看记录',

    'records.title': '客户档案',
    'records.orders': '订单与合同',
    'records.payments': '付款与应收',
    'records.transactions': '交易记录',
    'records.returns': '退货与折扣',
    'records.documents': '证件资料',
    'records.empty': '此类别暂无记录。',
    'col.reference': '单号',
    'col.description': '说明',
    'col.type': '类型',
    'col.amount': '金额',
    'col.status': '状态',
    'col.date': '日期',
    'col.issued': '签发日期',
    'col.expires': '到期日',
    'payment.receivable': '应收款',
    'payment.received': '已收款',
    'expiry.expired': '已过期',
    'expiry.suspicious': '需核实',

    'status.open': '未结',
    'status.new': '新建',
    'status.pending': '待处理',
    'status.processing': '处理中',
    'status.in_progress': '进行中',
    'status.paid': '已付款',
    'status.partially_paid': '部分付款',
    'status.partial': '部分',
    'status.due': '待付',
    'status.overdue': '已逾期',
    'status.closed': '已关闭',
    'status.resolved': '已解决',
    'status.completed': '已完成',
    'status.complete': '已完成',
    'status.cancelled': '已取消',
    'status.canceled': '已取消',
    'status.void': '已作废',
    'status.refunded': '已退款',
    'status.shipped': '已发货',
    'status.delivered': '已签收',
    'status.active': '有效',
    'status.valid': '有效',
    'status.expired': '已过期',
    'status.draft': '草稿',
    'status.approved': '已批准',
    'status.rejected': '已拒绝',
    'status.signed': '已签署',
    'status.settled': '已结算',
    'status.failed': '失败',
    'status.disputed': '有争议',

    'contacts.title': '近期联络记录',
    'contacts.empty': '暂无历史联络。',
    'direction.inbound': '呼入',
    'direction.outbound': '呼出',
    'cstate.queued': '排队中',
    'cstate.offered': '待接听',
    'cstate.connected': '处理中',
    'cstate.wrap_up': '话后整理',
    'cstate.closed': '已结束',
    'cstate.abandoned': '已放弃',
    'cstate.failed': '失败',
    'channel.voice': '电话',
    'channel.email': '邮件',
    'channel.chat': '在线咨询',
    'channel.fax': '传真',
    'channel.callback': '预约回拨',
    'channel.outbound': '外呼',

    'cases.title': '未结工单',
    'cases.empty': '暂无未结工单。',
    'notes.title': '备注',
    'notes.empty': '暂无备注。',
    'toast.dismiss': '关闭',
  };

  const zhTW = {
    'app.name': 'Contact Hub',
    'app.title_login': '登入 · Contact Hub',
    'app.title_console': '客服工作台 · Contact Hub',
    'console.title': '客服工作台',
    'lang.label': '語言',

    'login.heading': '登入',
    'login.subtitle': '使用 Contact Hub 帳號登入客服工作台。',
    'login.username': '使用者名稱',
    'login.password': '密碼',
    'login.submit': '登入',
    'login.submitting': '正在登入…',
    'login.required': '請輸入使用者名稱和密碼。',
    'login.error.invalid': '使用者名稱或密碼錯誤。',
    'login.error.locked.other': '登入嘗試次數過多，請於 {secs} 秒後再試。',
    'login.error.unlocked': '現在可以重新登入了。',
    'login.session_expired': '工作階段已結束，請重新登入。',
    'login.signed_out': '您已登出。',
    'login.footer': 'Contact Hub · 開源聯絡中心',
    'login.hero.title': '每位客戶、每個管道，盡在一個工作台。',
    'login.hero.text': '電話、電子郵件、傳真與網頁線上客服統一排隊分派，接通前即彈出客戶檔案與歷史紀錄。',

    'error.network': '無法連線至伺服器，請檢查網路連線。',
    'error.generic': '操作失敗（錯誤 {code}）。',
    'error.server': '伺服器錯誤：{message}',
    'error.code.forbidden': '您沒有執行此操作的權限。',
    'error.code.not_found': '找不到資料。',
    'error.code.unauthorized': '工作階段已結束，請重新登入。',
    'error.code.invalid_state': '目前無法切換到該狀態。',
    'error.code.rate_limited': '請求過於頻繁，請稍候。',

    'header.logout': '登出',
    'role.agent': '客服專員',
    'role.supervisor': '主管',
    'role.admin': '系統管理員',

    'state.label': '客服狀態',
    'state.timer_title': '目前狀態持續時間',
    'state.available': '可接聽',
    'state.not_ready': '暫離',
    'state.with_reason': '{state} · {reason}',
    'state.logged_out': '離線',
    'state.reserved': '保留中',
    'state.busy': '通話/處理中',
    'state.wrap_up': '話後處理',
    'state.unknown': '正在取得狀態…',
    'state.offline_placeholder': '未連線',
    'state.error.not_connected': '未連線至伺服器，狀態未變更。',
    'state.error.timeout': '伺服器未確認狀態變更。',
    'reason.break': '休息',
    'reason.lunch': '用餐',
    'reason.meeting': '會議',
    'reason.training': '訓練',
    'reason.admin': '行政作業',
    'reason.rona': '未應答',
    'reason.after_call_work': '話後處理',

    'conn.connecting': '正在連線…',
    'conn.connected': '已連線',
    'conn.reconnecting': '重新連線中…',
    'conn.retry_in.other': '{secs} 秒後重試',

    'work.title': '我的聯絡',
    'work.empty': '目前沒有指派的聯絡——切換為「可接聽」後，新的聯絡會顯示在這裡',
    'contact.unknown_customer': '未知客戶',
    'contact.no_subject': '（無主旨）',
    'contact.queue': '佇列：{queue}',

    'search.label': '搜尋客戶',
    'search.placeholder': '依姓名、電話號碼或電子郵件搜尋客戶',
    'search.button': '搜尋',
    'search.searching': '搜尋中…',
    'search.count.other': '找到 {count} 位符合「{q}」的客戶',
    'search.none': '沒有符合「{q}」的客戶。',
    'search.none_hint': '可嘗試其他寫法、電話號碼末幾碼或電子郵件地址。',
    'welcome.title': '尋找客戶',
    'welcome.text': '可依姓名、任何格式的電話號碼或電子郵件搜尋。客戶卡片會顯示在這裡；有聯絡指派給您時會自動彈出。',

    'customer.back': '返回搜尋結果',
    'customer.back_search': '返回搜尋',
    'customer.loading': '正在載入客戶資料…',
    'customer.not_found': '此客戶已不存在。',
    'customer.details': '客戶資料',
    'customer.identities': '聯絡方式',
    'customer.no_identities': '尚無聯絡方式',
    'customer.preferred_channel': '偏好管道',
    'customer.no_preference': '無偏好',
    'customer.language': '語言',
    'customer.consent': '聯絡同意',
    'customer.since': '建檔時間',
    'customer.external_ref': '客戶編號',

    'kind.person': '個人',
    'kind.company': '企業',
    'tier.vip': 'VIP 客戶',
    'tier.important': '重要客戶',
    'tier.ordinary': '一般客戶',

    'consent.do_not_call': '勿來電',
    'consent.do_not_email': '勿寄郵件',
    'consent.do_not_call_long': '勿來電——不得外撥',
    'consent.do_not_email_long': '勿寄郵件——不得寄送行銷或外發郵件',
    'consent.none': '無限制',

    'identity.phone': '電話',
    'identity.email': '電子郵件',
    'identity.fax': '傳真',
    'identity.chat': '線上客服',

    'balance.title': '目前餘額',
    'balance.owed': '客戶應付',
    'balance.credit': '客戶預付/餘額',
    'balance.settled': '已結清',

    'alerts.title': '提醒',
    'alert.document_expired': '證件已過期',
    'alert.document_expiring': '證件即將到期',
    'alert.document_expiry_suspicious': '證件有效期限異常',
    'alert.balance_overdue': '有逾期欠款',
    'alert.date.document_expired': '已於 {date} 過期',
    'alert.date.document_expiring': '將於 {date} 到期',
    'alert.date.document_expiry_suspicious': '登記的到期日：{date}',
    'alert.date.balance_overdue': '應付日期 {date}',
    'alert.date.default': '{date}',
    'alert.days_ago.other': '{days} 天前',
    'alert.in_days.other': '{days} 天後',
    'alert.today': '今天',
    'alert.view': '查看紀錄',

    'records.title': '客戶檔案',
    'records.orders': '訂單與合約',
    'records.payments': '付款與應收',
    'records.transactions': '交易紀錄',
    'records.returns': '退貨與折扣',
    'records.documents': '證件文件',
    'records.empty': '此類別尚無紀錄。',
    'col.reference': '單號',
    'col.description': '說明',
    'col.type': '類型',
    'col.amount': '金額',
    'col.status': '狀態',
    'col.date': '日期',
    'col.issued': '核發日期',
    'col.expires': '到期日',
    'payment.receivable': '應收款',
    'payment.received': '已收款',
    'expiry.expired': '已過期',
    'expiry.suspicious': '需核實',

    'status.open': '未結',
    'status.new': '新建',
    'status.pending': '待處理',
    'status.processing': '處理中',
    'status.in_progress': '進行中',
    'status.paid': '已付款',
    'status.partially_paid': '部分付款',
    'status.partial': '部分',
    'status.due': '待付',
    'status.overdue': '已逾期',
    'status.closed': '已關閉',
    'status.resolved': '已解決',
    'status.completed': '已完成',
    'status.complete': '已完成',
    'status.cancelled': '已取消',
    'status.canceled': '已取消',
    'status.void': '已作廢',
    'status.refunded': '已退款',
    'status.shipped': '已出貨',
    'status.delivered': '已送達',
    'status.active': '有效',
    'status.valid': '有效',
    'status.expired': '已過期',
    'status.draft': '草稿',
    'status.approved': '已核准',
    'status.rejected': '已拒絕',
    'status.signed': '已簽署',
    'status.settled': '已結算',
    'status.failed': '失敗',
    'status.disputed': '有爭議',

    'contacts.title': '近期聯絡紀錄',
    'contacts.empty': '尚無歷史聯絡。',
    'direction.inbound': '來電/來訊',
    'direction.outbound': '外撥/外發',
    'cstate.queued': '排隊中',
    'cstate.offered': '待接聽',
    'cstate.connected': '處理中',
    'cstate.wrap_up': '話後處理',
    'cstate.closed': '已結束',
    'cstate.abandoned': '已放棄',
    'cstate.failed': '失敗',
    'channel.voice': '電話',
    'channel.email': '電子郵件',
    'channel.chat': '線上客服',
    'channel.fax': '傳真',
    'channel.callback': '預約回電',
    'channel.outbound': '外撥',

    'cases.title': '未結案件',
    'cases.empty': '尚無未結案件。',
    'notes.title': '備註',
    'notes.empty': '尚無備註。',
    'toast.dismiss': '關閉',
  };

  const CATALOGUES = { en, 'zh-CN': zhCN, 'zh-TW': zhTW };

  /** Pick a console language from a list like navigator.languages. */
  function detectLang(list) {
    for (const raw of list || []) {
      const tag = String(raw || '').toLowerCase();
      if (tag === 'zh' || tag.startsWith('zh-')) {
        if (/^zh-(tw|hk|mo)\b/.test(tag) || /(^|-)hant(-|$)/.test(tag)) return 'zh-TW';
        return 'zh-CN';
      }
      if (tag === 'en' || tag.startsWith('en-')) return 'en';
    }
    return 'en';
  }

  function storedLang() {
    try {
      const v = window.localStorage.getItem(STORAGE_KEY);
      return LANGS.includes(v) ? v : null;
    } catch (e) {
      return null;
    }
  }

  let current = storedLang() || detectLang(navigator.languages && navigator.languages.length
    ? navigator.languages : [navigator.language]);

  function getLang() {
    return current;
  }

  function setLang(lang) {
    if (!LANGS.includes(lang)) return;
    current = lang;
    document.documentElement.lang = lang;
    try {
      window.localStorage.setItem(STORAGE_KEY, lang);
    } catch (e) {
      /* private mode: keep it for this page only */
    }
  }

  function lookup(key) {
    const cat = CATALOGUES[current];
    if (Object.prototype.hasOwnProperty.call(cat, key)) return cat[key];
    if (Object.prototype.hasOwnProperty.call(en, key)) return en[key];
    return undefined;
  }

  function has(key) {
    return lookup(key) !== undefined;
  }

  function fill(template, vars) {
    if (!vars) return template;
    return template.replace(/\{(\w+)\}/g, (m, name) =>
      Object.prototype.hasOwnProperty.call(vars, name) && vars[name] !== undefined && vars[name] !== null
        ? String(vars[name]) : m);
  }

  /** Translate key; unknown keys come back as the key itself (visible, easy to spot). */
  function t(key, vars) {
    const s = lookup(key);
    return fill(s === undefined ? key : s, vars);
  }

  /** Plural-aware translate: looks up key.one / key.other / ... by Intl.PluralRules. */
  function tn(key, count, vars) {
    let form = 'other';
    try {
      form = new Intl.PluralRules(current).select(count);
    } catch (e) { /* keep other */ }
    const v = Object.assign({ count }, vars);
    if (has(key + '.' + form)) return t(key + '.' + form, v);
    if (has(key + '.other')) return t(key + '.other', v);
    return t(key, v);
  }

  window.I18N = Object.freeze({ LANGS, LANG_NAMES, CATALOGUES, t, tn, has, getLang, setLang, detectLang });
  window.t = t;
})();
