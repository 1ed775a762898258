/*
 * Contact Hub — the customer chat window (served at /chat/frame.js, runs inside the widget's
 * iframe on the hub's origin). Protocol: docs/chat.md.
 *
 * Plain modern JS, no build step, no dependencies. Strict CSP: no inline script or style, no
 * innerHTML — every string (ours or the server's) goes into the page as text; links are made
 * from http(s) URLs only.
 *
 * What it keeps in localStorage (key STORE_KEY, partitioned per host site by the browser):
 * the session token, the highest seq received, the transcript, the unacknowledged outbox, the
 * draft, the language and whether the window was open — so a network drop or a reload resumes
 * the same conversation with exactly the same history: every unacknowledged message is sent
 * again with its original client_id (the hub stores it once), everything is rendered by seq and
 * deduplicated by seq and client_id.
 *
 * Talks to the embedding page (widget.js) with postMessage only: open/close/unread/ready.
 */
'use strict';

(function () {
  // ------------------------------------------------------------------ configuration

  const params = new URLSearchParams(location.search);
  const LANGS = ['zh-CN', 'zh-TW', 'en'];
  const LANG_NAMES = { 'zh-CN': '简体中文', 'zh-TW': '繁體中文', en: 'English' };
  // Short names for the header's switch (the full name is its tooltip and accessible name).
  const LANG_SHORT = { 'zh-CN': '简体', 'zh-TW': '繁體', en: 'EN' };
  const STORE_KEY = 'contact-hub-chat.v1';
  const DRAFT_KEY = 'contact-hub-chat.draft';
  const MSG = 'contact-hub-chat'; // marks our postMessage envelopes
  const DEFAULT_COLOR = '#2563eb';
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
  const SILENCE_MS = 40_000;
  const CONNECT_TIMEOUT_MS = 10_000; // the hub heartbeats every 15 s: this much silence = a dead socket
  const PING_EVERY_MS = 20_000;
  const TYPING_REPEAT_MS = 3_000;
  const TYPING_IDLE_MS = 4_000;
  const MAX_KEPT_MESSAGES = 1000;
  const FLUSH_BURST = 8; // the hub allows a burst of rate_per_minute / 3 (10 by default)
  const FLUSH_SPACING_MS = 2100;

  function normalizeLang(tag) {
    const t = String(tag || '').trim().toLowerCase();
    if (!t) return null;
    if (t === 'zh' || t.startsWith('zh-') || t.startsWith('zh_')) {
      if (/(tw|hk|mo|hant)/.test(t)) return 'zh-TW';
      return 'zh-CN';
    }
    if (t === 'en' || t.startsWith('en-') || t.startsWith('en_')) return 'en';
    return null;
  }

  function detectLang() {
    for (const l of navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language]) {
      const n = normalizeLang(l);
      if (n) return n;
    }
    return 'en';
  }

  function validColor(c) {
    return /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(String(c || '').trim()) ? String(c).trim() : null;
  }

  const CONFIG = {
    title: (params.get('title') || '').trim().slice(0, 60),
    color: validColor(params.get('color')) || DEFAULT_COLOR,
    lang: normalizeLang(params.get('lang')),
    topics: (params.get('topics') || '').split(',').map((s) => s.trim()).filter((s) => /^[A-Za-z0-9_-]{1,40}$/.test(s)),
    embedded: window.parent !== window,
  };

  // ------------------------------------------------------------------ translations

  const en = {
    'title.default': 'Chat with us',
    'lang.label': 'Language',
    'btn.close': 'Minimize chat',
    'btn.end': 'End chat',
    'loading': 'Loading…',
    'head.sub.prechat': 'We typically reply in a few minutes',
    'head.sub.wait': 'Typical wait: {wait}',
    'head.sub.offline': 'We’re away right now',
    'head.sub.waiting': 'Waiting for an agent…',
    'head.sub.starting': 'Starting your chat…',
    'head.sub.agent': '{name}',
    'head.sub.agent_suffix': ' is here to help',
    'head.sub.ended': 'Chat ended',
    'status_error.title': 'Chat is unavailable',
    'status_error.text': 'We can’t reach the chat service right now. Please check your connection and try again.',
    'status_error.retry': 'Try again',
    'prechat.heading': 'Start a conversation',
    'prechat.intro': 'Tell us a little about yourself and we’ll connect you with the next available agent.',
    'prechat.agents.one': '{count} agent online',
    'prechat.agents.other': '{count} agents online',
    'prechat.wait': 'Expected wait: {wait}',
    'prechat.topic_closed': 'This team can’t chat right now.',
    'prechat.topic_closed_link': 'Leave a message instead',
    'form.name': 'Your name',
    'form.name_ph': 'e.g. Li Lei',
    'form.email': 'Email',
    'form.email_ph': 'you@example.com',
    'form.phone': 'Phone',
    'form.phone_ph': '138 0013 8000',
    'form.contact_hint': 'Email or phone — at least one, so we can follow up.',
    'form.topic': 'Topic',
    'form.message': 'How can we help?',
    'form.message_ph': 'Describe your question…',
    'form.optional': 'optional',
    'form.required': 'required',
    'form.submit': 'Start chat',
    'form.note': 'When is a good time to call?',
    'form.note_ph': 'e.g. weekdays after 2 pm',
    'form.callback_phone_hint': 'The number we should call.',
    'err.name_required': 'Please enter your name.',
    'err.contact_required': 'Please enter an email address or a phone number.',
    'err.email_invalid': 'This doesn’t look like an email address.',
    'err.phone_invalid': 'This doesn’t look like a phone number.',
    'err.phone_required': 'Please enter the number we should call.',
    'err.message_required': 'Please write your question.',
    'err.too_long': 'Your message is too long ({count}/{max} characters).',
    'err.fix_fields': 'Please check the highlighted fields.',
    'err.network': 'We couldn’t send this. Please check your connection and try again.',
    'err.rate_limited_http': 'Too many requests. Please wait a moment and try again.',
    'err.server': 'Something went wrong: {message}',
    'err.start_rate_limited': 'Too many chats were started from your network. Please wait a minute and try again.',
    'offline.heading.closed': 'We’re closed right now',
    'offline.heading.busy': 'No one is available to chat right now',
    'offline.intro': 'Leave us a message or ask us to call you back — we’ll get back to you as soon as we can.',
    'offline.tab.message': 'Leave a message',
    'offline.tab.callback': 'Request a callback',
    'offline.send_message': 'Send message',
    'offline.send_callback': 'Request callback',
    'offline.recheck': 'Try live chat again',
    'offline.sending': 'Sending…',
    'done.message.heading': 'Message received',
    'done.message.text': 'Thank you! We’ll reply by email or phone as soon as we can.',
    'done.callback.heading': 'Callback requested',
    'done.callback.text': 'Thank you! We’ll call you at {phone}.',
    'done.reference': 'Your reference number',
    'done.reference_hint': 'Please quote it if you contact us again.',
    'done.back': 'Done',
    'topic.support': 'General support',
    'topic.sales': 'Sales & orders',
    'topic.billing': 'Billing & invoices',
    'wait.soon': 'less than a minute',
    'wait.min.one': 'about {count} minute',
    'wait.min.other': 'about {count} minutes',
    'waiting.title': 'Connecting you to an agent',
    'waiting.next': 'You’re next in line',
    'waiting.position': 'You are number {position} in line',
    'waiting.wait': 'Expected wait: {wait}',
    'waiting.hint': 'Stay on this page — you can keep typing while you wait.',
    'msg.you': 'You',
    'msg.agent': 'Agent',
    'msg.status.sending': 'Sending…',
    'msg.status.sent': 'Sent',
    'msg.status.read': 'Read',
    'msg.status.failed': 'Not delivered',
    'msg.ended_customer': 'You ended the chat.',
    'msg.day.today': 'Today',
    'msg.day.yesterday': 'Yesterday',
    'typing.named': '{name} is typing…',
    'typing.anon': 'The agent is typing…',
    'composer.label': 'Message',
    'composer.placeholder': 'Type a message…',
    'composer.send': 'Send',
    'composer.attach': 'Attach a file',
    'composer.hint': 'Enter to send · Shift+Enter for a new line',
    'composer.count': '{count}/{max}',
    'conn.connecting': 'Connecting…',
    'conn.reconnecting': 'Connection lost. Reconnecting…',
    'conn.offline': 'You’re offline. Your messages will be sent when you’re back online.',
    'err.rate_limited': 'You’re sending messages very quickly. Please wait a moment, then send again.',
    'err.too_long_server': 'That message is too long. Please shorten it and send again.',
    'err.ended': 'This chat has ended; the message was not delivered.',
    'err.session_gone': 'Your previous chat could not be found. You can start a new one.',
    'err.invalid_field': 'Please check your details: {message}',
    'upload.too_large': '“{name}” is too large. Files can be up to {max}.',
    'upload.unsupported': '“{name}” can’t be sent. You can send images (PNG, JPEG, GIF, WebP), PDF and text files.',
    'upload.failed': 'Uploading “{name}” failed.',
    'upload.retry': 'Retry',
    'upload.remove': 'Remove',
    'upload.progress': 'Uploading… {percent}%',
    'upload.not_yet': 'You can send files once the chat has started.',
    'file.download': 'Download {name}',
    'end.title': 'End this chat?',
    'end.text': 'You can download the transcript afterwards.',
    'end.yes': 'End chat',
    'end.no': 'Cancel',
    'ended.title': 'This chat has ended',
    'ended.text': 'Thank you for contacting us. We hope we could help.',
    'ended.transcript': 'Download transcript',
    'ended.new': 'Start a new chat',
    'new_messages': 'New messages',
    'powered': 'Powered by Contact Hub',
  };

  const zhCN = {
    'title.default': '在线客服',
    'lang.label': '语言',
    'btn.close': '收起聊天窗口',
    'btn.end': '结束对话',
    'loading': '正在加载…',
    'head.sub.prechat': '我们通常在几分钟内回复',
    'head.sub.wait': '预计等待：{wait}',
    'head.sub.offline': '客服暂时不在线',
    'head.sub.waiting': '正在等待客服…',
    'head.sub.starting': '正在发起对话…',
    'head.sub.agent': '{name}',
    'head.sub.agent_suffix': ' 为您服务',
    'head.sub.ended': '对话已结束',
    'status_error.title': '在线客服暂不可用',
    'status_error.text': '暂时无法连接客服系统，请检查网络后重试。',
    'status_error.retry': '重试',
    'prechat.heading': '发起咨询',
    'prechat.intro': '请留下您的信息，我们将为您接通下一位空闲的客服。',
    'prechat.agents.other': '{count} 位客服在线',
    'prechat.wait': '预计等待：{wait}',
    'prechat.topic_closed': '该业务暂时无法在线咨询。',
    'prechat.topic_closed_link': '改为留言',
    'form.name': '您的称呼',
    'form.name_ph': '例如：李雷',
    'form.email': '电子邮箱',
    'form.email_ph': 'you@example.com',
    'form.phone': '手机号码',
    'form.phone_ph': '138 0013 8000',
    'form.contact_hint': '邮箱和手机至少填写一项，方便我们后续联系您。',
    'form.topic': '咨询类型',
    'form.message': '请问有什么可以帮您？',
    'form.message_ph': '请描述您的问题…',
    'form.optional': '选填',
    'form.required': '必填',
    'form.submit': '开始咨询',
    'form.note': '方便接听的时间',
    'form.note_ph': '例如：工作日下午 2 点以后',
    'form.callback_phone_hint': '我们将拨打这个号码。',
    'err.name_required': '请填写您的称呼。',
    'err.contact_required': '请填写电子邮箱或手机号码。',
    'err.email_invalid': '邮箱格式不正确。',
    'err.phone_invalid': '电话号码格式不正确。',
    'err.phone_required': '请填写回电号码。',
    'err.message_required': '请填写您的问题。',
    'err.too_long': '消息过长（{count}/{max} 字）。',
    'err.fix_fields': '请检查标红的项目。',
    'err.network': '发送失败，请检查网络连接后重试。',
    'err.rate_limited_http': '请求过于频繁，请稍后再试。',
    'err.server': '出现问题：{message}',
    'err.start_rate_limited': '您的网络发起的对话过多，请稍等一分钟后再试。',
    'offline.heading.closed': '现在是非服务时间',
    'offline.heading.busy': '暂时没有客服可以接待',
    'offline.intro': '您可以给我们留言，或预约电话回访，我们会尽快与您联系。',
    'offline.tab.message': '留言',
    'offline.tab.callback': '预约回电',
    'offline.send_message': '提交留言',
    'offline.send_callback': '预约回电',
    'offline.recheck': '再试一次在线咨询',
    'offline.sending': '正在提交…',
    'done.message.heading': '留言已收到',
    'done.message.text': '感谢您的留言！我们会尽快通过邮件或电话回复您。',
    'done.callback.heading': '回电预约成功',
    'done.callback.text': '感谢您！我们会致电 {phone} 与您联系。',
    'done.reference': '您的受理编号',
    'done.reference_hint': '再次联系我们时，请提供此编号。',
    'done.back': '完成',
    'topic.support': '咨询与售后',
    'topic.sales': '购买咨询',
    'topic.billing': '账单与发票',
    'wait.soon': '不到 1 分钟',
    'wait.min.other': '约 {count} 分钟',
    'waiting.title': '正在为您接通客服',
    'waiting.next': '下一位就是您',
    'waiting.position': '您前面还有 {ahead} 位',
    'waiting.wait': '预计等待：{wait}',
    'waiting.hint': '请不要离开本页面，等待期间您可以继续输入问题。',
    'msg.you': '我',
    'msg.agent': '客服',
    'msg.status.sending': '发送中…',
    'msg.status.sent': '已送达',
    'msg.status.read': '已读',
    'msg.status.failed': '未送达',
    'msg.ended_customer': '您已结束对话。',
    'msg.day.today': '今天',
    'msg.day.yesterday': '昨天',
    'typing.named': '{name} 正在输入…',
    'typing.anon': '客服正在输入…',
    'composer.label': '消息',
    'composer.placeholder': '请输入消息…',
    'composer.send': '发送',
    'composer.attach': '发送文件',
    'composer.hint': 'Enter 发送 · Shift+Enter 换行',
    'composer.count': '{count}/{max}',
    'conn.connecting': '正在连接…',
    'conn.reconnecting': '网络连接中断，正在重新连接…',
    'conn.offline': '网络已断开，恢复后将自动发送您的消息。',
    'err.rate_limited': '您发送得太快了，请稍等片刻再发送。',
    'err.too_long_server': '消息过长，请删减后重新发送。',
    'err.ended': '对话已结束，该消息未能送达。',
    'err.session_gone': '找不到之前的对话，您可以发起新的咨询。',
    'err.invalid_field': '请检查您填写的信息：{message}',
    'upload.too_large': '“{name}”太大了，文件不能超过 {max}。',
    'upload.unsupported': '无法发送“{name}”。可发送图片（PNG、JPEG、GIF、WebP）、PDF 和文本文件。',
    'upload.failed': '“{name}”上传失败。',
    'upload.retry': '重试',
    'upload.remove': '移除',
    'upload.progress': '正在上传… {percent}%',
    'upload.not_yet': '对话开始后才能发送文件。',
    'file.download': '下载 {name}',
    'end.title': '确定结束对话吗？',
    'end.text': '结束后您可以下载对话记录。',
    'end.yes': '结束对话',
    'end.no': '取消',
    'ended.title': '对话已结束',
    'ended.text': '感谢您的咨询，祝您生活愉快！',
    'ended.transcript': '下载对话记录',
    'ended.new': '发起新的咨询',
    'new_messages': '有新消息',
    'powered': '由 Contact Hub 提供技术支持',
  };

  const zhTW = {
    'title.default': '線上客服',
    'lang.label': '語言',
    'btn.close': '收合聊天視窗',
    'btn.end': '結束對話',
    'loading': '載入中…',
    'head.sub.prechat': '我們通常在幾分鐘內回覆',
    'head.sub.wait': '預計等候：{wait}',
    'head.sub.offline': '客服暫時不在線上',
    'head.sub.waiting': '正在等候客服…',
    'head.sub.starting': '正在開始對話…',
    'head.sub.agent': '{name}',
    'head.sub.agent_suffix': ' 為您服務',
    'head.sub.ended': '對話已結束',
    'status_error.title': '線上客服暫時無法使用',
    'status_error.text': '目前無法連線到客服系統，請檢查網路後再試一次。',
    'status_error.retry': '重試',
    'prechat.heading': '開始諮詢',
    'prechat.intro': '請留下您的資料，我們將為您接通下一位有空的客服人員。',
    'prechat.agents.other': '{count} 位客服在線上',
    'prechat.wait': '預計等候：{wait}',
    'prechat.topic_closed': '此業務目前無法線上諮詢。',
    'prechat.topic_closed_link': '改為留言',
    'form.name': '您的稱呼',
    'form.name_ph': '例如：陳小美',
    'form.email': '電子郵件',
    'form.email_ph': 'you@example.com',
    'form.phone': '手機號碼',
    'form.phone_ph': '0912 345 678',
    'form.contact_hint': '電子郵件和手機至少填寫一項，方便我們後續與您聯繫。',
    'form.topic': '諮詢類別',
    'form.message': '請問有什麼可以幫您？',
    'form.message_ph': '請描述您的問題…',
    'form.optional': '選填',
    'form.required': '必填',
    'form.submit': '開始諮詢',
    'form.note': '方便接聽的時間',
    'form.note_ph': '例如：平日下午 2 點以後',
    'form.callback_phone_hint': '我們將撥打這個號碼。',
    'err.name_required': '請填寫您的稱呼。',
    'err.contact_required': '請填寫電子郵件或手機號碼。',
    'err.email_invalid': '電子郵件格式不正確。',
    'err.phone_invalid': '電話號碼格式不正確。',
    'err.phone_required': '請填寫回電號碼。',
    'err.message_required': '請填寫您的問題。',
    'err.too_long': '訊息過長（{count}/{max} 字）。',
    'err.fix_fields': '請檢查標示紅色的欄位。',
    'err.network': '傳送失敗，請檢查網路連線後再試一次。',
    'err.rate_limited_http': '請求過於頻繁，請稍後再試。',
    'err.server': '發生問題：{message}',
    'err.start_rate_limited': '您的網路開始的對話過多，請稍候一分鐘再試。',
    'offline.heading.closed': '目前為非服務時間',
    'offline.heading.busy': '目前沒有客服人員可以接待',
    'offline.intro': '您可以留言給我們，或預約電話回撥，我們會儘快與您聯繫。',
    'offline.tab.message': '留言',
    'offline.tab.callback': '預約回電',
    'offline.send_message': '送出留言',
    'offline.send_callback': '預約回電',
    'offline.recheck': '再試一次線上諮詢',
    'offline.sending': '送出中…',
    'done.message.heading': '已收到您的留言',
    'done.message.text': '感謝您的留言！我們會儘快以電子郵件或電話回覆您。',
    'done.callback.heading': '回電預約成功',
    'done.callback.text': '感謝您！我們會致電 {phone} 與您聯繫。',
    'done.reference': '您的受理編號',
    'done.reference_hint': '再次與我們聯繫時，請提供此編號。',
    'done.back': '完成',
    'topic.support': '諮詢與售後',
    'topic.sales': '購買諮詢',
    'topic.billing': '帳單與發票',
    'wait.soon': '不到 1 分鐘',
    'wait.min.other': '約 {count} 分鐘',
    'waiting.title': '正在為您接通客服',
    'waiting.next': '下一位就是您',
    'waiting.position': '您前面還有 {ahead} 位',
    'waiting.wait': '預計等候：{wait}',
    'waiting.hint': '請不要離開本頁面，等候期間您可以繼續輸入問題。',
    'msg.you': '我',
    'msg.agent': '客服',
    'msg.status.sending': '傳送中…',
    'msg.status.sent': '已送達',
    'msg.status.read': '已讀',
    'msg.status.failed': '未送達',
    'msg.ended_customer': '您已結束對話。',
    'msg.day.today': '今天',
    'msg.day.yesterday': '昨天',
    'typing.named': '{name} 正在輸入…',
    'typing.anon': '客服正在輸入…',
    'composer.label': '訊息',
    'composer.placeholder': '請輸入訊息…',
    'composer.send': '傳送',
    'composer.attach': '傳送檔案',
    'composer.hint': 'Enter 傳送 · Shift+Enter 換行',
    'composer.count': '{count}/{max}',
    'conn.connecting': '連線中…',
    'conn.reconnecting': '網路連線中斷，正在重新連線…',
    'conn.offline': '網路已中斷，恢復後將自動傳送您的訊息。',
    'err.rate_limited': '您傳送得太快了，請稍候片刻再傳送。',
    'err.too_long_server': '訊息過長，請刪減後重新傳送。',
    'err.ended': '對話已結束，這則訊息未能送達。',
    'err.session_gone': '找不到先前的對話，您可以開始新的諮詢。',
    'err.invalid_field': '請檢查您填寫的資料：{message}',
    'upload.too_large': '「{name}」太大了，檔案不能超過 {max}。',
    'upload.unsupported': '無法傳送「{name}」。可傳送圖片（PNG、JPEG、GIF、WebP）、PDF 和文字檔。',
    'upload.failed': '「{name}」上傳失敗。',
    'upload.retry': '重試',
    'upload.remove': '移除',
    'upload.progress': '上傳中… {percent}%',
    'upload.not_yet': '對話開始後才能傳送檔案。',
    'file.download': '下載 {name}',
    'end.title': '確定要結束對話嗎？',
    'end.text': '結束後您可以下載對話紀錄。',
    'end.yes': '結束對話',
    'end.no': '取消',
    'ended.title': '對話已結束',
    'ended.text': '感謝您的諮詢，祝您順心愉快！',
    'ended.transcript': '下載對話紀錄',
    'ended.new': '開始新的諮詢',
    'new_messages': '有新訊息',
    'powered': '由 Contact Hub 提供技術支援',
  };

  const CATALOGUES = { en, 'zh-CN': zhCN, 'zh-TW': zhTW };
  let lang = 'en';

  function fill(template, vars) {
    if (!vars) return template;
    return template.replace(/\{(\w+)\}/g, (m, k) =>
      Object.prototype.hasOwnProperty.call(vars, k) && vars[k] !== undefined && vars[k] !== null ? String(vars[k]) : m);
  }

  function has(key) {
    return Object.prototype.hasOwnProperty.call(CATALOGUES[lang], key) || Object.prototype.hasOwnProperty.call(en, key);
  }

  /** Translate; plain text for textContent only. */
  function t(key, vars) {
    const cat = CATALOGUES[lang];
    const s = Object.prototype.hasOwnProperty.call(cat, key) ? cat[key] : en[key];
    return fill(s === undefined ? key : s, vars);
  }

  /** Plural-aware: key.one / key.other by Intl.PluralRules (Chinese has only "other"). */
  function tn(key, count, vars) {
    let form = 'other';
    try { form = new Intl.PluralRules(lang).select(count); } catch (e) { /* other */ }
    const v = Object.assign({ count }, vars);
    if (Object.prototype.hasOwnProperty.call(CATALOGUES[lang], key + '.' + form)) return t(key + '.' + form, v);
    if (has(key + '.' + form)) return fill(en[key + '.' + form], v);
    return t(key + '.other', v);
  }

  function topicLabel(key) {
    return has('topic.' + key) ? t('topic.' + key) : key.replace(/[_-]+/g, ' ').replace(/^\w/, (c) => c.toUpperCase());
  }

  function formatWait(secs) {
    const s = Math.max(0, Number(secs) || 0);
    if (s < 60) return t('wait.soon');
    return tn('wait.min', Math.round(s / 60));
  }

  function formatBytes(n) {
    const v = Number(n) || 0;
    if (v < 1024) return v + ' B';
    if (v < 1024 * 1024) return (v / 1024).toFixed(v < 10 * 1024 ? 1 : 0) + ' KB';
    return (v / 1024 / 1024).toFixed(v < 10 * 1024 * 1024 ? 1 : 0).replace(/\.0$/, '') + ' MB';
  }

  function formatTime(ms) {
    try {
      return new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', hour12: false }).format(new Date(ms));
    } catch (e) {
      const d = new Date(ms);
      return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
    }
  }

  function dayKey(ms) {
    const d = new Date(ms);
    return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate();
  }

  function formatDay(ms) {
    const today = dayKey(Date.now());
    const k = dayKey(ms);
    if (k === today) return t('msg.day.today');
    if (k === dayKey(Date.now() - 86_400_000)) return t('msg.day.yesterday');
    try {
      return new Intl.DateTimeFormat(lang, { month: 'long', day: 'numeric', weekday: 'short' }).format(new Date(ms));
    } catch (e) {
      return new Date(ms).toDateString();
    }
  }

  // ------------------------------------------------------------------ DOM helpers

  const $ = (id) => document.getElementById(id);

  /** Build an element. props: class, text, dataset, on<event>, hidden, any attribute. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = String(v);
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else if (k === 'hidden') el.hidden = true;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // Icon paths adapted from Feather Icons (MIT licence, https://feathericons.com), 24x24 stroke.
  const ICONS = {
    chat: ['M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z'],
    headset: ['M3 18v-6a9 9 0 0 1 18 0v6', 'M21 19a2 2 0 0 1-2 2h-1a2 2 0 0 1-2-2v-3a2 2 0 0 1 2-2h3z', 'M3 19a2 2 0 0 0 2 2h1a2 2 0 0 0 2-2v-3a2 2 0 0 0-2-2H3z'],
    minimize: ['M6 9l6 6 6-6'],
    power: ['M18.36 6.64a9 9 0 1 1-12.73 0', 'M12 2v10'],
    clip: ['M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48'],
    send: ['M22 2L11 13', 'M22 2l-7 20-4-9-9-4 20-7z'],
    check: ['M20 6L9 17l-5-5'],
    checks: ['M17 6L7 16l-4-4', 'M22 6L12 16l-1.5-1.5'],
    clock: ['M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z', 'M12 6v6l4 2'],
    alert: ['M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z', 'M12 8v4', 'M12 16h.01'],
    file: ['M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z', 'M14 2v6h6', 'M16 13H8', 'M16 17H8', 'M10 9H8'],
    download: ['M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4', 'M7 10l5 5 5-5', 'M12 15V3'],
    mail: ['M4 4h16c1.1 0 2 .9 2 2v12c0 1.1-.9 2-2 2H4c-1.1 0-2-.9-2-2V6c0-1.1.9-2 2-2z', 'M22 6l-10 7L2 6'],
    phone: ['M22 16.92v3a2 2 0 0 1-2.18 2 19.79 19.79 0 0 1-8.63-3.07 19.5 19.5 0 0 1-6-6 19.79 19.79 0 0 1-3.07-8.67A2 2 0 0 1 4.11 2h3a2 2 0 0 1 2 1.72 12.84 12.84 0 0 0 .7 2.81 2 2 0 0 1-.45 2.11L8.09 9.91a16 16 0 0 0 6 6l1.27-1.27a2 2 0 0 1 2.11-.45 12.84 12.84 0 0 0 2.81.7A2 2 0 0 1 22 16.92z'],
    ok: ['M22 11.08V12a10 10 0 1 1-5.93-9.14', 'M22 4L12 14.01l-3-3'],
    refresh: ['M23 4v6h-6', 'M1 20v-6h6', 'M3.51 9a9 9 0 0 1 14.85-3.36L23 10', 'M1 14l4.64 4.36A9 9 0 0 0 20.49 15'],
    wifiOff: ['M1 1l22 22', 'M16.72 11.06A10.94 10.94 0 0 1 19 12.55', 'M5 12.55a10.94 10.94 0 0 1 5.17-2.39', 'M10.71 5.05A16 16 0 0 1 22.58 9', 'M1.42 9a15.91 15.91 0 0 1 4.7-2.88', 'M8.53 16.11a6 6 0 0 1 6.95 0', 'M12 20h.01'],
    arrowDown: ['M12 5v14', 'M19 12l-7 7-7-7'],
    moon: ['M21 12.79A9 9 0 1 1 11.21 3 7 7 0 0 0 21 12.79z'],
  };

  function icon(name, cls) {
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('fill', 'none');
    svg.setAttribute('stroke', 'currentColor');
    svg.setAttribute('stroke-width', '2');
    svg.setAttribute('stroke-linecap', 'round');
    svg.setAttribute('stroke-linejoin', 'round');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
    for (const d of ICONS[name] || ICONS.chat) {
      const p = document.createElementNS(NS, 'path');
      p.setAttribute('d', d);
      svg.append(p);
    }
    return svg;
  }

  function initials(name) {
    const s = String(name || '').trim();
    if (!s) return '';
    // A Chinese name: its last two characters (王爱丽 → 爱丽); "Alice Wang 王爱丽" → AW.
    const latin = s.split(/\s+/).filter((w) => /^[A-Za-z]/.test(w));
    if (latin.length >= 2) return (latin[0][0] + latin[1][0]).toUpperCase();
    if (latin.length === 1 && !/[\u3400-\u9fff]/.test(s)) return latin[0].slice(0, 2).toUpperCase();
    const han = s.replace(/[^\u3400-\u9fff]/g, '');
    if (han) return han.length > 2 ? han.slice(-2) : han;
    return s.slice(0, 2).toUpperCase();
  }

  /** A long URL as text with line-break opportunities after its separators (not inside words). */
  function breakable(url) {
    const parts = [];
    const cut = url.indexOf('://') + 3; // never between the slashes of the scheme
    const pieces = url.slice(cut).split(/(?<=[/?&=.#_-])/);
    pieces[0] = url.slice(0, cut) + pieces[0];
    for (const piece of pieces) {
      if (parts.length) parts.push(document.createElement('wbr'));
      parts.push(document.createTextNode(piece));
    }
    return parts;
  }

  /** Plain text with http(s) links made clickable; everything as text nodes. */
  function linkify(text) {
    const out = [];
    const re = /\bhttps?:\/\/[^\s<>"'“”‘’（）()【】《》，。！？、；：]+/gi;
    let last = 0;
    let m;
    while ((m = re.exec(text))) {
      let url = m[0];
      // Trailing punctuation belongs to the sentence, not the link.
      const trail = /[.,;:!?'")\]}]+$/.exec(url);
      if (trail) url = url.slice(0, -trail[0].length);
      let ok = false;
      try {
        const u = new URL(url);
        ok = u.protocol === 'http:' || u.protocol === 'https:';
      } catch (e) { ok = false; }
      if (!ok || !url) continue;
      if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
      out.push(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow', class: 'msg-link' }, breakable(url)));
      last = m.index + url.length;
      re.lastIndex = last;
    }
    if (last < text.length) out.push(document.createTextNode(text.slice(last)));
    return out;
  }

  // ------------------------------------------------------------------ accent colour

  function hexToRgb(hex) {
    let s = hex.replace('#', '');
    if (s.length === 3) s = s.split('').map((c) => c + c).join('');
    const n = parseInt(s, 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function mix(rgb, to, amount) {
    return rgb.map((c, i) => Math.round(c + (to[i] - c) * amount));
  }

  function css(rgb) {
    return 'rgb(' + rgb.join(', ') + ')';
  }

  function luminance(rgb) {
    const [r, g, b] = rgb.map((c) => {
      const v = c / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }

  /** Sets the accent palette through the CSSOM (allowed by the frame's CSP, unlike style attributes). */
  function applyAccent(color) {
    const rgb = hexToRgb(color);
    const root = document.documentElement.style;
    const light = luminance(rgb) > 0.45;
    root.setProperty('--accent', css(rgb));
    root.setProperty('--accent-600', css(mix(rgb, [0, 0, 0], 0.15)));
    root.setProperty('--accent-50', css(mix(rgb, [255, 255, 255], 0.93)));
    root.setProperty('--accent-100', css(mix(rgb, [255, 255, 255], 0.85)));
    root.setProperty('--accent-ring', 'rgba(' + rgb.join(', ') + ', .25)');
    root.setProperty('--on-accent', light ? '#0f172a' : '#ffffff');
    root.setProperty('--on-accent-2', light ? 'rgba(15, 23, 42, .7)' : 'rgba(255, 255, 255, .82)');
    // Text in the accent colour on white must stay readable: darken light accents for text.
    root.setProperty('--accent-text', css(light ? mix(rgb, [0, 0, 0], 0.55) : rgb));
  }

  // ------------------------------------------------------------------ storage

  // The frame's own localStorage (the browser partitions it per host site) when it may use it.
  // Where the browser denies storage to third-party frames (third-party cookies blocked,
  // private windows), the embedding page keeps it: widget.js stores what the frame sends under
  // the same keys in the host site's localStorage and hands it back when the frame loads.
  const store = { mode: 'memory', values: Object.create(null) };
  const STORE_KEYS = [STORE_KEY, DRAFT_KEY];

  function localStorageWorks() {
    try {
      const k = 'contact-hub-chat.probe';
      window.localStorage.setItem(k, '1');
      window.localStorage.removeItem(k);
      return true;
    } catch (e) {
      return false;
    }
  }

  function getItem(key) {
    if (store.mode === 'local') {
      try { return window.localStorage.getItem(key); } catch (e) { return null; }
    }
    return Object.prototype.hasOwnProperty.call(store.values, key) ? store.values[key] : null;
  }

  /** `value` null removes the key. */
  function setItem(key, value) {
    if (store.mode === 'local') {
      try {
        if (value === null) window.localStorage.removeItem(key);
        else window.localStorage.setItem(key, value);
      } catch (e) { /* quota: keep going with what is in memory */ }
      return;
    }
    if (value === null) delete store.values[key];
    else store.values[key] = value;
    if (store.mode === 'parent') postToParent({ type: 'store', key, value });
  }

  function readStore() {
    try {
      const raw = getItem(STORE_KEY);
      const v = raw ? JSON.parse(raw) : null;
      return v && typeof v === 'object' ? v : {};
    } catch (e) {
      return {};
    }
  }

  function save() {
    setItem(STORE_KEY, JSON.stringify({ v: 1, lang, open: ui.open, session: S }));
  }

  function readDraft() {
    return getItem(DRAFT_KEY) || '';
  }

  function writeDraft(text) {
    setItem(DRAFT_KEY, text ? text : null);
  }

  function newId(prefix) {
    const a = new Uint8Array(9);
    crypto.getRandomValues(a);
    return prefix + '-' + Array.from(a, (b) => b.toString(36).padStart(2, '0')).join('').slice(0, 16);
  }

  // ------------------------------------------------------------------ state

  /**
   * The session (persisted): null before a chat starts.
   *   token, conversationId, state ('starting' | 'queued' | 'connected' | 'ended'), agent,
   *   endedReason, start (the start frame until `started` arrives), messages (stored, by seq),
   *   outbox (sent or to send, not yet acknowledged), failed (refused for good), lastSeq,
   *   seenSeq (shown to the customer), readSent (receipt sent up to), agentRead, queue, profile.
   */
  let S = null;

  /** What is not persisted. */
  const ui = {
    view: 'loading', // loading | status_error | prechat | offline | done | chat
    open: !CONFIG.embedded,
    status: null,
    conn: 'idle', // idle | connecting | online | reconnecting | offline
    attached: false, // the current socket has the conversation (after started/resumed)
    agentTyping: null, // { name, until }
    uploads: [], // { client_id, file, name, size, type, progress, error, blobUrl, xhr }
    notice: null, // { text, kind } under the composer
    formError: null,
    formValues: null, // what the customer typed in the last form (kept for a new chat)
    offlineTab: 'message',
    done: null, // { kind, reference, phone }
    confirmEnd: false,
    topicStatus: null, // status for the chosen topic, when it differs
    page: '',
    parentOrigin: '*',
  };

  function freshSession(startFrame, firstMessage, profile) {
    return {
      token: null,
      conversationId: null,
      state: 'starting',
      agent: null,
      endedReason: null,
      start: startFrame,
      startClientId: firstMessage ? firstMessage.client_id : null,
      messages: [],
      outbox: firstMessage ? [firstMessage] : [],
      failed: [],
      lastSeq: 0,
      seenSeq: 0,
      readSent: 0,
      agentRead: 0,
      queue: null,
      profile,
      startedAt: Date.now(),
    };
  }

  /** Checks a stored session's shape; anything odd is dropped rather than trusted. */
  function loadSession(v) {
    if (!v || typeof v !== 'object') return null;
    if (!v.token && !v.start) return null;
    const arr = (x) => (Array.isArray(x) ? x : []);
    const s = Object.assign(freshSession(null, null, null), v);
    s.messages = arr(v.messages).filter((m) => m && Number.isInteger(m.seq) && m.seq > 0);
    s.outbox = arr(v.outbox).filter((m) => m && typeof m.client_id === 'string' && typeof m.text === 'string');
    s.failed = arr(v.failed).filter((m) => m && typeof m.client_id === 'string');
    for (const k of ['lastSeq', 'seenSeq', 'readSent', 'agentRead']) s[k] = Number.isInteger(v[k]) ? v[k] : 0;
    s.messages.sort((a, b) => a.seq - b.seq);
    return s;
  }

  // ------------------------------------------------------------------ messages

  function knownClientIds() {
    const ids = new Set();
    for (const m of S.messages) if (m.client_id) ids.add(m.client_id);
    return ids;
  }

  /** A stored message from the hub (a `message` frame, an upload's answer or an ack). */
  function addStored(m) {
    if (!S || !m || !Number.isInteger(m.seq) || m.seq <= 0) return false;
    if (m.from === 'note') return false;
    if (m.client_id) {
      const i = S.outbox.findIndex((o) => o.client_id === m.client_id);
      if (i >= 0) S.outbox.splice(i, 1);
      S.failed = S.failed.filter((f) => f.client_id !== m.client_id);
    }
    if (S.messages.some((x) => x.seq === m.seq)) return false;
    if (m.client_id && m.from === 'customer' && S.messages.some((x) => x.client_id === m.client_id)) return false;
    const entry = {
      seq: m.seq,
      from: m.from === 'agent' || m.from === 'system' ? m.from : 'customer',
      text: typeof m.text === 'string' ? m.text : '',
      at: Date.parse(m.at) || Date.now(),
    };
    if (m.name) entry.name = String(m.name);
    if (m.client_id) entry.client_id = String(m.client_id);
    if (m.event) entry.event = String(m.event);
    if (m.attachment && Number.isInteger(m.attachment.id)) {
      entry.attachment = {
        id: m.attachment.id,
        name: String(m.attachment.name || 'file'),
        content_type: String(m.attachment.content_type || ''),
        size: Number(m.attachment.size) || 0,
      };
    }
    const at = S.messages.findIndex((x) => x.seq > entry.seq);
    if (at < 0) S.messages.push(entry);
    else S.messages.splice(at, 0, entry);
    if (S.messages.length > MAX_KEPT_MESSAGES) S.messages.splice(0, S.messages.length - MAX_KEPT_MESSAGES);
    return entry;
  }

  function onStoredEvent(entry, live) {
    if (entry.from === 'agent') {
      if (entry.name) S.agent = entry.name;
      ui.agentTyping = null;
      if (S.state === 'queued' || S.state === 'starting') S.state = 'connected';
    }
    if (entry.from === 'system' && entry.event === 'agent_joined') {
      S.state = S.state === 'ended' ? 'ended' : 'connected';
      S.queue = null;
      const name = joinedName(entry.text);
      if (name) S.agent = name;
    }
    if (entry.from === 'system' && entry.event === 'transferred' && live) {
      if (S.state !== 'ended') S.state = 'queued';
      S.agent = null;
    }
    if (entry.from === 'system' && entry.event && entry.event.startsWith('ended')) {
      S.state = 'ended';
      S.endedReason = S.endedReason || entry.event.replace(/^ended_?/, '') || 'agent';
    }
  }

  /** The agent's name from the "agent joined" notice (the hub's three templates). */
  function joinedName(text) {
    const s = String(text || '');
    const m = /^客服\s*(.+?)\s*为您服务$/.exec(s) || /^客服\s*(.+?)\s*為您服務$/.exec(s) || /^(.+?) has joined the chat$/.exec(s);
    return m ? m[1] : null;
  }

  // ------------------------------------------------------------------ socket

  let ws = null;
  let attempt = 0;
  let reconnectTimer = null;
  let lastFrameAt = 0;
  let lastSentAt = 0;
  let watchdog = null;
  let retryTimer = null;
  let awaitingStart = false;

  function socketUrl() {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/chat/ws';
  }

  function setConn(c) {
    if (ui.conn === c) return;
    ui.conn = c;
    renderBanner();
    renderHeader();
  }

  function needSocket() {
    return S && S.state !== 'ended';
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (!needSocket() || ws) return;
    if (navigator.onLine === false) {
      setConn('offline');
      return;
    }
    let sock;
    try {
      sock = new WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    ui.attached = false;
    setConn(attempt > 0 ? 'reconnecting' : 'connecting');
    // A connection attempt into a dead network can hang for minutes: give up and try again.
    const opening = setTimeout(() => {
      if (ws === sock && sock.readyState === WebSocket.CONNECTING) dropSocket(false);
    }, CONNECT_TIMEOUT_MS);
    sock.onopen = () => {
      clearTimeout(opening);
      if (ws !== sock) return;
      lastFrameAt = Date.now();
      startWatchdog();
      hello();
    };
    sock.onmessage = (e) => {
      if (ws !== sock) return;
      lastFrameAt = Date.now();
      let f;
      try { f = JSON.parse(e.data); } catch (err) { return; }
      if (f && typeof f.type === 'string') onFrame(f);
    };
    sock.onclose = () => {
      clearTimeout(opening);
      if (ws !== sock) return;
      lost();
    };
    sock.onerror = () => { /* onclose follows */ };
  }

  function lost() {
    ws = null;
    ui.attached = false;
    awaitingStart = false;
    stopWatchdog();
    if (!needSocket()) {
      setConn('idle');
      return;
    }
    if (navigator.onLine === false) {
      setConn('offline');
      return;
    }
    setConn('reconnecting');
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimeout(reconnectTimer);
    const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt += 1;
    reconnectTimer = setTimeout(connect, base + Math.floor(Math.random() * base * 0.3));
  }

  /** Drops the socket now and reconnects (a dead connection, the browser went offline). */
  function dropSocket(offline) {
    const sock = ws;
    if (!sock) return;
    ws = null;
    try { sock.close(4000, offline ? 'offline' : 'silent'); } catch (e) { /* already closed */ }
    lost();
  }

  function startWatchdog() {
    stopWatchdog();
    watchdog = setInterval(() => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      const now = Date.now();
      if (now - lastFrameAt > SILENCE_MS) {
        dropSocket(false);
        return;
      }
      if (now - lastSentAt > PING_EVERY_MS) send({ type: 'ping' });
    }, 5000);
  }

  function stopWatchdog() {
    clearInterval(watchdog);
    watchdog = null;
  }

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      lastSentAt = Date.now();
      return true;
    } catch (e) {
      return false;
    }
  }

  function hello() {
    if (!S) return;
    if (S.token) {
      send({ type: 'resume', token: S.token, last_seq: S.lastSeq });
    } else if (S.start) {
      const frame = Object.assign({}, S.start, { page: ui.page || S.start.page || undefined });
      const first = S.outbox.find((o) => o.client_id === S.startClientId);
      if (first) frame.message = { client_id: first.client_id, text: first.text };
      awaitingStart = true;
      send(frame);
    }
  }

  /**
   * Sends every unacknowledged message again, oldest first, with its original client_id. A long
   * outbox (written offline) goes out at the hub's pace: a burst, then one every two seconds,
   * instead of being refused as too fast.
   */
  function flushOutbox() {
    if (!ui.attached) return;
    const now = Date.now();
    let n = 0;
    for (const o of S.outbox) {
      if (o.retryAt && o.retryAt > now) continue;
      if (n < FLUSH_BURST) {
        send({ type: 'message', client_id: o.client_id, text: o.text });
      } else {
        o.retryAt = now + (n - FLUSH_BURST + 1) * FLUSH_SPACING_MS;
      }
      n += 1;
    }
    scheduleRetry();
  }

  function scheduleRetry() {
    clearTimeout(retryTimer);
    const next = S && S.outbox.filter((o) => o.retryAt).map((o) => o.retryAt).sort((a, b) => a - b)[0];
    if (!next) return;
    retryTimer = setTimeout(() => {
      if (!S) return;
      const now = Date.now();
      for (const o of S.outbox) {
        if (o.retryAt && o.retryAt <= now) {
          o.retryAt = 0;
          if (ui.attached) send({ type: 'message', client_id: o.client_id, text: o.text });
        }
      }
      scheduleRetry();
    }, Math.max(0, next - Date.now()));
  }

  function onFrame(f) {
    switch (f.type) {
      case 'started': {
        awaitingStart = false;
        attempt = 0;
        S.token = String(f.token || '');
        S.conversationId = f.conversation_id;
        S.start = null;
        applySessionState(f);
        ui.attached = true;
        setConn('online');
        save();
        // Messages typed while the chat was starting (the first one came with `start`).
        for (const o of S.outbox) {
          if (o.client_id !== S.startClientId) send({ type: 'message', client_id: o.client_id, text: o.text });
        }
        sendPendingEnd();
        renderAll();
        break;
      }
      case 'resumed': {
        attempt = 0;
        applySessionState(f);
        ui.attached = true;
        setConn('online');
        save();
        flushOutbox();
        sendPendingEnd();
        renderAll();
        break;
      }
      case 'message': {
        const entry = addStored(f);
        if (entry) {
          if (entry.seq > S.lastSeq) S.lastSeq = entry.seq;
          onStoredEvent(entry, true);
          save();
          renderAll();
          announceIfHidden(entry);
        } else if (Number.isInteger(f.seq) && f.seq > S.lastSeq) {
          S.lastSeq = f.seq;
          save();
        }
        break;
      }
      case 'ack': {
        const o = S.outbox.find((x) => x.client_id === f.client_id);
        if (o) {
          addStored({ seq: f.seq, from: 'customer', text: o.text, at: f.at, client_id: o.client_id });
          save();
          renderMessages();
        }
        break;
      }
      case 'queue': {
        S.queue = { position: Number(f.position) || 0, wait: Number(f.expected_wait_secs) || 0 };
        if (S.state === 'starting') S.state = 'queued';
        save();
        renderAll();
        break;
      }
      case 'typing': {
        ui.agentTyping = f.active ? { name: f.name ? String(f.name) : S.agent, until: Date.now() + 15_000 } : null;
        if (f.active && f.name && S.state !== 'ended') S.agent = String(f.name);
        renderTyping();
        break;
      }
      case 'read': {
        const seq = Number(f.seq) || 0;
        if (seq > S.agentRead) {
          S.agentRead = seq;
          save();
          renderMessages();
        }
        break;
      }
      case 'ended': {
        S.state = 'ended';
        S.endedReason = String(f.reason || 'agent');
        // Whatever was still unacknowledged can no longer be delivered.
        for (const o of S.outbox) S.failed.push({ client_id: o.client_id, text: o.text, at: o.at, reason: 'ended' });
        S.outbox = [];
        ui.agentTyping = null;
        ui.confirmEnd = false;
        save();
        renderAll();
        break;
      }
      case 'error':
        onError(f);
        break;
      default: // heartbeat, pong
        break;
    }
  }

  /** "End chat" pressed while the socket was down: sent once attached again. */
  function sendPendingEnd() {
    if (S.pendingEnd && S.state !== 'ended' && send({ type: 'end' })) {
      S.pendingEnd = false;
      save();
    }
  }

  function applySessionState(f) {
    const st = f.state === 'connected' || f.state === 'ended' || f.state === 'queued' ? f.state : S.state;
    if (S.state !== 'ended' || st === 'ended') S.state = st;
    if (f.agent && f.agent.name) S.agent = String(f.agent.name);
    else if (st === 'queued') S.agent = null;
    if (st !== 'queued') S.queue = null;
  }

  function onError(f) {
    const code = String(f.code || '');
    if (awaitingStart) {
      // The start was refused: back to the form with what was typed.
      awaitingStart = false;
      const values = Object.assign({}, S.profile || {});
      const first = S.outbox.find((o) => o.client_id === S.startClientId);
      if (first) values.message = first.text;
      endSession();
      ui.formValues = values;
      ui.formError = code === 'rate_limited' ? t('err.start_rate_limited')
        : code === 'invalid_field' ? t('err.invalid_field', { message: localizeServerField(f.message) })
          : t('err.server', { message: String(f.message || code) });
      ui.view = 'prechat';
      renderAll();
      return;
    }
    if (code === 'unknown_session') {
      const values = Object.assign({}, S.profile || {});
      endSession();
      ui.formValues = values;
      ui.formError = t('err.session_gone');
      loadStatus();
      return;
    }
    if (code === 'no_session') {
      if (ws) hello();
      return;
    }
    if (!f.client_id) {
      if (code === 'rate_limited') showNotice(t('err.rate_limited'), 'warn');
      return;
    }
    const i = S.outbox.findIndex((o) => o.client_id === f.client_id);
    if (i < 0) return;
    const o = S.outbox[i];
    if (code === 'not_stored') {
      // The hub could not store it: it stays in the outbox and goes again shortly.
      o.tries = (o.tries || 0) + 1;
      o.retryAt = Date.now() + Math.min(30_000, 1000 * Math.pow(2, o.tries));
      save();
      scheduleRetry();
      return;
    }
    S.outbox.splice(i, 1);
    if (code === 'rate_limited' || code === 'too_long') {
      // Not stored: the text goes back into the box so nothing is lost.
      restoreToComposer(o.text);
      showNotice(code === 'too_long' ? t('err.too_long_server') : t('err.rate_limited'), 'warn');
    } else if (code === 'ended') {
      S.failed.push({ client_id: o.client_id, text: o.text, at: o.at, reason: 'ended' });
    } else if (code === 'invalid_message') {
      // Empty after the hub's trimming: nothing to deliver.
    } else {
      S.failed.push({ client_id: o.client_id, text: o.text, at: o.at, reason: code });
    }
    save();
    renderMessages();
  }

  function localizeServerField(message) {
    const m = String(message || '');
    if (/^phone/.test(m)) return t('err.phone_invalid');
    if (/^email/.test(m)) return t('err.email_invalid');
    return m;
  }

  function endSession() {
    const sock = ws;
    ws = null;
    if (sock) { try { sock.close(1000, 'new chat'); } catch (e) { /* closed */ } }
    stopWatchdog();
    clearTimeout(reconnectTimer);
    clearTimeout(retryTimer);
    attempt = 0;
    ui.attached = false;
    awaitingStart = false;
    for (const u of ui.uploads) {
      if (u.xhr) { try { u.xhr.abort(); } catch (e) { /* done */ } }
      if (u.blobUrl) URL.revokeObjectURL(u.blobUrl);
    }
    ui.uploads = [];
    ui.agentTyping = null;
    ui.notice = null;
    ui.confirmEnd = false;
    S = null;
    ui.conn = 'idle';
    writeDraft('');
    save();
    postUnread();
  }

  // ------------------------------------------------------------------ sending

  function sendText(text) {
    const client_id = newId('m');
    S.outbox.push({ client_id, text, at: Date.now() });
    save();
    if (ui.attached) send({ type: 'message', client_id, text });
    stopTyping(false);
    renderMessages(true);
  }

  let typingActive = false;
  let typingSentAt = 0;
  let typingTimer = null;

  function onDraftInput(text) {
    if (!ui.attached || !S || S.state === 'ended') return;
    clearTimeout(typingTimer);
    if (!text.trim()) {
      stopTyping(true);
      return;
    }
    const now = Date.now();
    if (!typingActive || now - typingSentAt > TYPING_REPEAT_MS) {
      typingActive = true;
      typingSentAt = now;
      send({ type: 'typing', active: true });
    }
    typingTimer = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
  }

  /** `tell`: send active:false (after a pause); a sent message ends typing on the hub itself. */
  function stopTyping(tell) {
    clearTimeout(typingTimer);
    if (typingActive && tell) send({ type: 'typing', active: false });
    typingActive = false;
  }

  // ------------------------------------------------------------------ attachments

  const UPLOAD_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf', 'text/plain'];

  function maxBytes() {
    return (ui.status && ui.status.max_attachment_bytes) || 5 * 1024 * 1024;
  }

  function attachmentUrl(id) {
    return '/chat/attachments/' + encodeURIComponent(id) + '?token=' + encodeURIComponent(S.token || '');
  }

  function pickFiles(files) {
    for (const file of Array.from(files || [])) {
      if (!S || !S.token) {
        showNotice(t('upload.not_yet'), 'warn');
        return;
      }
      if (file.size > maxBytes()) {
        showNotice(t('upload.too_large', { name: file.name, max: formatBytes(maxBytes()) }), 'error');
        continue;
      }
      const u = {
        client_id: newId('f'),
        file,
        name: file.name || 'file',
        size: file.size,
        type: file.type || 'application/octet-stream',
        progress: 0,
        error: null,
        blobUrl: /^image\/(png|jpeg|gif|webp)$/.test(file.type) ? URL.createObjectURL(file) : null,
        at: Date.now(),
      };
      ui.uploads.push(u);
      upload(u);
    }
    renderMessages(true);
  }

  function upload(u) {
    u.error = null;
    u.progress = 0;
    const xhr = new XMLHttpRequest();
    u.xhr = xhr;
    xhr.open('POST', '/chat/attachments');
    xhr.setRequestHeader('Authorization', 'Bearer ' + S.token);
    xhr.setRequestHeader('Content-Type', UPLOAD_TYPES.includes(u.type) ? u.type : 'application/octet-stream');
    xhr.setRequestHeader('X-Filename', encodeURIComponent(u.name));
    xhr.setRequestHeader('X-Client-Id', u.client_id);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        u.progress = Math.round((e.loaded / e.total) * 100);
        updateUploadProgress(u);
      }
    };
    xhr.onload = () => {
      u.xhr = null;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 201 && body && body.message) {
        addStored(body.message);
        removeUpload(u);
        save();
        renderMessages(true);
        return;
      }
      const code = body && body.error && body.error.code;
      if (xhr.status === 413) u.error = t('upload.too_large', { name: u.name, max: formatBytes(maxBytes()) });
      else if (xhr.status === 415) u.error = t('upload.unsupported', { name: u.name });
      else if (xhr.status === 429) u.error = t('err.rate_limited_http');
      else if (xhr.status === 409 || code === 'ended') u.error = t('err.ended');
      else u.error = t('upload.failed', { name: u.name });
      u.retryable = xhr.status !== 413 && xhr.status !== 415 && xhr.status !== 409;
      renderMessages();
    };
    xhr.onerror = () => {
      u.xhr = null;
      u.error = t('upload.failed', { name: u.name });
      u.retryable = true;
      renderMessages();
    };
    xhr.send(u.file);
    renderMessages();
  }

  function removeUpload(u) {
    ui.uploads = ui.uploads.filter((x) => x !== u);
    if (u.blobUrl) URL.revokeObjectURL(u.blobUrl);
  }

  // ------------------------------------------------------------------ talking to widget.js

  function postToParent(msg) {
    if (!CONFIG.embedded) return;
    try {
      window.parent.postMessage(Object.assign({ [MSG]: 1 }, msg), ui.parentOrigin);
    } catch (e) { /* parent gone */ }
  }

  function unreadCount() {
    if (!S) return 0;
    return S.messages.filter((m) => m.from === 'agent' && m.seq > S.seenSeq).length;
  }

  let lastUnreadPosted = -1;
  /** The unread count for the launcher's badge, with the newest unread message as a preview. */
  function postUnread() {
    const n = unreadCount();
    if (n === lastUnreadPosted) return;
    lastUnreadPosted = n;
    const msg = { type: 'unread', count: n };
    const last = n > 0 ? S.messages.filter((m) => m.from === 'agent' && m.seq > S.seenSeq).pop() : null;
    if (last) {
      msg.preview = {
        name: String(last.name || t('msg.agent')).slice(0, 60),
        text: (last.attachment ? last.attachment.name : last.text).replace(/\s+/g, ' ').slice(0, 140),
      };
    }
    postToParent(msg);
  }

  function setOpen(open) {
    if (ui.open === open) return;
    ui.open = open;
    save();
    if (open) {
      markSeen();
      setTimeout(focusFirst, 60);
    }
  }

  window.addEventListener('message', (e) => {
    if (e.source !== window.parent || !e.data || e.data[MSG] !== 1) return;
    if (ui.parentOrigin !== '*' && e.origin !== ui.parentOrigin) return;
    const d = e.data;
    if (d.type === 'open') setOpen(true);
    else if (d.type === 'close') setOpen(false);
    else if (d.type === 'host') {
      if (typeof d.page === 'string') ui.page = d.page.slice(0, 500);
      if (store.mode === 'parent' && !booted) {
        const stored = d.stored && typeof d.stored === 'object' ? d.stored : {};
        for (const k of STORE_KEYS) if (typeof stored[k] === 'string') store.values[k] = stored[k];
        boot();
      }
    }
  });

  /** The embedding page's origin; '*' when unknown or opaque (a file:// page, a sandboxed frame). */
  function parentOrigin() {
    let o = null;
    try {
      if (location.ancestorOrigins && location.ancestorOrigins.length) o = location.ancestorOrigins[0];
    } catch (e) { /* not supported */ }
    try {
      if (!o && document.referrer) o = new URL(document.referrer).origin;
    } catch (e) { /* no referrer */ }
    return o && /^https?:\/\//.test(o) ? o : '*';
  }

  function announceIfHidden(entry) {
    if (entry.from === 'agent') postUnread();
  }

  // ------------------------------------------------------------------ seen and read receipts

  function isVisible() {
    return ui.open && document.visibilityState === 'visible';
  }

  /** The highest seq of a message the customer can see in the list right now. */
  function highestVisibleSeq() {
    const list = $('msg-list');
    const scroller = $('body');
    if (!list || !scroller) return 0;
    const bottom = scroller.scrollTop + scroller.clientHeight;
    const rows = list.querySelectorAll('[data-seq]');
    for (let i = rows.length - 1; i >= 0; i--) {
      const r = rows[i];
      if (r.offsetTop + Math.min(r.offsetHeight, 40) <= bottom + 2) return Number(r.dataset.seq) || 0;
    }
    return 0;
  }

  function markSeen() {
    if (!S || ui.view !== 'chat' || !isVisible()) return;
    const seq = highestVisibleSeq();
    let changed = false;
    if (seq > S.seenSeq) {
      S.seenSeq = seq;
      changed = true;
    }
    // A read receipt when the window has the focus and there is something of theirs to confirm.
    if (document.hasFocus() && seq > S.readSent && ui.attached
      && S.messages.some((m) => m.seq > S.readSent && m.seq <= seq && m.from !== 'customer')) {
      if (send({ type: 'read', seq })) {
        S.readSent = seq;
        changed = true;
      }
    }
    if (changed) save();
    postUnread();
    updateNewPill();
  }

  // ------------------------------------------------------------------ rendering: header, banner

  function title() {
    return CONFIG.title || t('title.default');
  }

  function renderHeader() {
    document.documentElement.lang = lang;
    document.title = title();
    $('head-title').textContent = title();
    const sub = $('head-sub');
    const avatar = $('head-avatar');
    let subText = '';
    let agentName = null;
    if (ui.view === 'chat' && S) {
      if (S.state === 'ended') subText = t('head.sub.ended');
      else if (S.state === 'connected' && S.agent) {
        agentName = S.agent;
        subText = t('head.sub.agent', { name: S.agent });
      } else if (S.state === 'starting') subText = t('head.sub.starting');
      else subText = t('head.sub.waiting');
    } else if (ui.view === 'offline' || ui.view === 'done') {
      subText = t('head.sub.offline');
    } else if (ui.view === 'prechat' && ui.status) {
      subText = ui.status.expected_wait_secs > 0 ? t('head.sub.wait', { wait: formatWait(ui.status.expected_wait_secs) })
        : t('head.sub.prechat');
    }
    sub.textContent = subText;
    // "… is here to help" gives way first on a narrow header; the name stays.
    if (agentName) sub.append(h('span', { class: 'head-sub-suffix', text: t('head.sub.agent_suffix') }));
    sub.hidden = !subText;
    avatar.replaceChildren();
    avatar.classList.toggle('is-agent', !!agentName);
    if (agentName) avatar.append(h('span', { class: 'head-initials', text: initials(agentName) }));
    else avatar.append(icon(ui.view === 'offline' || ui.view === 'done' ? 'moon' : 'headset'));
    avatar.classList.toggle('is-online', ui.view === 'chat' && !!S && S.state === 'connected' && ui.conn === 'online');

    const sel = $('lang-select');
    $('lang-label').textContent = t('lang.label');
    sel.setAttribute('title', t('lang.label') + ': ' + LANG_NAMES[lang]);
    if (!sel.options.length) {
      for (const l of LANGS) sel.append(h('option', { value: l, text: LANG_SHORT[l], 'aria-label': LANG_NAMES[l], title: LANG_NAMES[l] }));
    }
    sel.value = lang;

    const end = $('end-btn');
    end.hidden = !(ui.view === 'chat' && S && S.state !== 'ended' && (S.token || S.start));
    end.setAttribute('aria-label', t('btn.end'));
    end.setAttribute('title', t('btn.end'));
    if (!end.firstChild) end.append(icon('power'));

    const close = $('close-btn');
    close.hidden = !CONFIG.embedded;
    close.setAttribute('aria-label', t('btn.close'));
    close.setAttribute('title', t('btn.close'));
    if (!close.firstChild) close.append(icon('minimize'));
  }

  function renderBanner() {
    const b = $('banner');
    const show = ui.view === 'chat' && S && S.state !== 'ended'
      && (ui.conn === 'reconnecting' || ui.conn === 'offline' || (ui.conn === 'connecting' && !!S.token));
    b.hidden = !show;
    b.className = 'banner' + (ui.conn === 'offline' ? ' is-offline' : '');
    b.dataset.conn = ui.conn;
    if (!show) {
      b.replaceChildren();
      return;
    }
    const text = ui.conn === 'offline' ? t('conn.offline') : ui.conn === 'reconnecting' ? t('conn.reconnecting') : t('conn.connecting');
    b.replaceChildren(ui.conn === 'offline' ? icon('wifiOff') : h('span', { class: 'spinner spinner-xs', 'aria-hidden': 'true' }),
      h('span', { text }));
  }

  // ------------------------------------------------------------------ rendering: views

  let renderedView = null;

  function renderAll() {
    renderHeader();
    renderBanner();
    const body = $('body');
    const app = $('app');
    app.dataset.view = ui.view;
    app.setAttribute('aria-busy', ui.view === 'loading' ? 'true' : 'false');
    if (ui.view === 'chat') {
      let fresh = false;
      if (renderedView !== 'chat') {
        body.replaceChildren(h('div', { class: 'chat-top', id: 'chat-top' }),
          h('ol', { class: 'msg-list', id: 'msg-list', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': title() }),
          h('div', { class: 'typing', id: 'typing', 'aria-live': 'polite' }),
          h('div', { class: 'chat-end', id: 'chat-end' }));
        buildComposer();
        msgNodes.clear();
        renderedView = 'chat';
        fresh = true;
      }
      renderChatTop();
      renderMessages(fresh);
      renderTyping();
      renderChatEnd();
      renderComposerState();
    } else {
      renderedView = ui.view;
      $('composer').hidden = true;
      $('composer').replaceChildren();
      body.replaceChildren(viewContent());
    }
    renderOverlay();
    postUnread();
  }

  function viewContent() {
    switch (ui.view) {
      case 'loading':
        return h('div', { class: 'center-box' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }),
          h('p', { class: 'muted', text: t('loading') }));
      case 'status_error':
        return h('div', { class: 'center-box' },
          h('div', { class: 'big-icon is-warn' }, icon('alert')),
          h('h2', { class: 'card-title', text: t('status_error.title') }),
          h('p', { class: 'muted', text: t('status_error.text') }),
          h('button', { type: 'button', class: 'btn btn-primary', onclick: () => loadStatus() }, icon('refresh'), t('status_error.retry')));
      case 'prechat':
        return prechatForm();
      case 'offline':
        return offlineView();
      case 'done':
        return doneView();
      default:
        return h('div');
    }
  }

  // ---- form building blocks

  function field(opts) {
    const id = 'f-' + opts.name;
    const hintId = id + '-hint';
    const errId = id + '-err';
    const attrs = {
      id, name: opts.name, class: 'input', autocomplete: opts.autocomplete || 'off',
      placeholder: opts.placeholder || '', 'aria-describedby': [opts.hint ? hintId : '', errId].filter(Boolean).join(' '),
    };
    if (opts.required) attrs['aria-required'] = 'true';
    let control;
    if (opts.type === 'textarea') {
      control = h('textarea', Object.assign(attrs, { rows: opts.rows || 3, maxlength: opts.maxlength || undefined }));
    } else if (opts.type === 'select') {
      control = h('select', attrs, opts.options.map((o) => h('option', { value: o.value, text: o.label })));
    } else {
      control = h('input', Object.assign(attrs, { type: opts.type || 'text', inputmode: opts.inputmode || undefined, maxlength: opts.maxlength || undefined }));
    }
    if (opts.value !== undefined && opts.value !== null) control.value = opts.value;
    const label = h('label', { for: id, class: 'label' }, opts.label,
      opts.required ? h('span', { class: 'req', 'aria-hidden': 'true', text: ' *' }) : null,
      opts.optional ? h('span', { class: 'opt', text: ' · ' + t('form.optional') }) : null);
    return h('div', { class: 'field', dataset: { field: opts.name } }, label, control,
      opts.hint ? h('p', { class: 'hint', id: hintId, text: opts.hint }) : null,
      h('p', { class: 'field-error', id: errId, hidden: true }));
  }

  function setFieldError(form, name, text) {
    const wrap = form.querySelector('[data-field="' + name + '"]');
    if (!wrap) return;
    const err = wrap.querySelector('.field-error');
    const control = wrap.querySelector('input, textarea, select');
    // `true`: marked invalid, the message is shown by another field.
    err.textContent = typeof text === 'string' ? text : '';
    err.hidden = typeof text !== 'string' || !text;
    wrap.classList.toggle('has-error', !!text);
    if (text) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  }

  const EMAIL_RE = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]{2,}$/;
  function validEmail(s) {
    return s.length <= 254 && EMAIL_RE.test(s);
  }

  function validPhone(s) {
    if (s.length > 40 || !/^[+\d\s().-]+$/.test(s)) return false;
    const digits = s.replace(/\D/g, '');
    return digits.length >= 6 && digits.length <= 16;
  }

  function topicOptions() {
    const offered = (ui.status && Array.isArray(ui.status.topics)) ? ui.status.topics : [];
    let keys = CONFIG.topics.length ? CONFIG.topics.filter((k) => !offered.length || offered.includes(k)) : offered;
    if (!keys.length) keys = offered;
    return keys.map((k) => ({ value: k, label: topicLabel(k) }));
  }

  function formValue(form, name) {
    const el = form.elements.namedItem(name);
    return el ? String(el.value || '').trim() : '';
  }

  function formBanner() {
    return ui.formError ? h('div', { class: 'alert is-error', role: 'alert' }, icon('alert'), h('span', { text: ui.formError })) : null;
  }

  function busyButton(btn, busy, label) {
    btn.disabled = busy;
    btn.classList.toggle('is-busy', busy);
    if (label) btn.querySelector('.btn-label').textContent = label;
  }

  // ---- pre-chat

  function prechatForm() {
    const v = ui.formValues || {};
    const status = ui.topicStatus || ui.status || {};
    const topics = topicOptions();
    const maxChars = (ui.status && ui.status.max_message_chars) || 2000;
    const facts = [];
    if (status.agents_available > 0) facts.push(h('span', { class: 'fact is-ok' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), tn('prechat.agents', status.agents_available)));
    if (status.open) facts.push(h('span', { class: 'fact' }, icon('clock', 'icon-xs'), t('prechat.wait', { wait: formatWait(status.expected_wait_secs) })));
    const closedNote = h('div', { class: 'alert is-warn', id: 'topic-closed', hidden: status.open !== false },
      icon('moon'), h('span', { text: t('prechat.topic_closed') + ' ' }),
      h('button', { type: 'button', class: 'btn-link', onclick: () => { rememberForm(form); ui.view = 'offline'; ui.formError = null; renderAll(); } }, t('prechat.topic_closed_link')));
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', id: 'prechat-submit' },
      h('span', { class: 'btn-spinner', 'aria-hidden': 'true' }), h('span', { class: 'btn-label', text: t('form.submit') }), icon('send', 'icon-sm'));
    const form = h('form', { class: 'form', id: 'prechat-form', novalidate: true, 'aria-labelledby': 'prechat-heading' },
      h('div', { class: 'intro' },
        h('h2', { class: 'intro-title', id: 'prechat-heading', text: t('prechat.heading') }),
        h('p', { class: 'intro-text', text: t('prechat.intro') }),
        facts.length ? h('div', { class: 'facts' }, facts) : null),
      formBanner(),
      field({ name: 'name', label: t('form.name'), placeholder: t('form.name_ph'), autocomplete: 'name', required: true, value: v.name, maxlength: 100 }),
      h('div', { class: 'field-row' },
        field({ name: 'email', label: t('form.email'), type: 'email', placeholder: t('form.email_ph'), autocomplete: 'email', inputmode: 'email', value: v.email, maxlength: 254 }),
        field({ name: 'phone', label: t('form.phone'), type: 'tel', placeholder: t('form.phone_ph'), autocomplete: 'tel', inputmode: 'tel', value: v.phone, maxlength: 40 })),
      h('p', { class: 'hint hint-group', id: 'contact-hint', text: t('form.contact_hint') }),
      topics.length > 1 ? field({ name: 'topic', label: t('form.topic'), type: 'select', options: topics, value: v.topic || topics[0].value }) : null,
      field({ name: 'message', label: t('form.message'), type: 'textarea', placeholder: t('form.message_ph'), required: true, rows: 3, value: v.message, maxlength: maxChars }),
      closedNote,
      submit,
      h('p', { class: 'powered', text: t('powered') }));
    const topicSel = form.elements.namedItem('topic');
    if (topicSel) topicSel.addEventListener('change', () => checkTopic(form, topicSel.value));
    form.addEventListener('input', () => rememberForm(form));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      submitPrechat(form, submit);
    });
    if (topicSel && topicSel.value && !ui.topicStatus) checkTopic(form, topicSel.value);
    return form;
  }

  function rememberForm(form) {
    const v = Object.assign({}, ui.formValues || {});
    for (const k of ['name', 'email', 'phone', 'topic', 'message', 'note']) {
      const el = form.elements.namedItem(k);
      if (el) v[k] = el.value;
    }
    ui.formValues = v;
  }

  let topicCheck = 0;
  async function checkTopic(form, topic) {
    const mine = ++topicCheck;
    try {
      const st = await fetchStatus(topic);
      if (mine !== topicCheck) return;
      ui.topicStatus = st;
      const note = form.querySelector('#topic-closed');
      if (note) note.hidden = st.open !== false;
    } catch (e) { /* keep the general status */ }
  }

  function validateContact(form, requirePhone) {
    let ok = true;
    const email = formValue(form, 'email');
    const phone = formValue(form, 'phone');
    setFieldError(form, 'email', '');
    setFieldError(form, 'phone', '');
    if (requirePhone) {
      if (!phone) { setFieldError(form, 'phone', t('err.phone_required')); ok = false; }
      else if (!validPhone(phone)) { setFieldError(form, 'phone', t('err.phone_invalid')); ok = false; }
      if (email && !validEmail(email)) { setFieldError(form, 'email', t('err.email_invalid')); ok = false; }
      return ok;
    }
    if (!email && !phone) {
      setFieldError(form, 'email', t('err.contact_required'));
      setFieldError(form, 'phone', true);
      return false;
    }
    if (email && !validEmail(email)) { setFieldError(form, 'email', t('err.email_invalid')); ok = false; }
    if (phone && !validPhone(phone)) { setFieldError(form, 'phone', t('err.phone_invalid')); ok = false; }
    return ok;
  }

  function validateText(form, name, required, maxChars) {
    const text = formValue(form, name);
    setFieldError(form, name, '');
    if (required && !text) {
      setFieldError(form, name, name === 'message' ? t('err.message_required') : t('err.name_required'));
      return false;
    }
    if (maxChars && text.length > maxChars) {
      setFieldError(form, name, t('err.too_long', { count: text.length, max: maxChars }));
      return false;
    }
    return true;
  }

  function focusFirstError(form) {
    const bad = form.querySelector('[aria-invalid="true"]');
    if (bad) bad.focus();
  }

  function submitPrechat(form, submit) {
    rememberForm(form);
    const maxChars = (ui.status && ui.status.max_message_chars) || 2000;
    const okName = validateText(form, 'name', true, 100);
    const okContact = validateContact(form, false);
    const okMessage = validateText(form, 'message', true, maxChars);
    if (!(okName && okContact && okMessage)) {
      focusFirstError(form);
      return;
    }
    busyButton(submit, true);
    const profile = {
      name: formValue(form, 'name'),
      email: formValue(form, 'email'),
      phone: formValue(form, 'phone'),
      topic: formValue(form, 'topic') || (topicOptions()[0] || {}).value || '',
    };
    const start = { type: 'start', language: lang };
    for (const k of ['name', 'email', 'phone', 'topic']) if (profile[k]) start[k] = profile[k];
    const page = ui.page || document.referrer || '';
    if (page) start.page = page.slice(0, 500);
    const first = { client_id: newId('m'), text: formValue(form, 'message'), at: Date.now() };
    S = freshSession(start, first, profile);
    ui.formError = null;
    ui.view = 'chat';
    save();
    renderAll();
    connect();
  }

  // ---- offline: leave a message or ask for a callback

  function offlineView() {
    const st = ui.status || {};
    const heading = st.within_hours === false ? t('offline.heading.closed') : t('offline.heading.busy');
    const tabs = [
      { key: 'message', label: t('offline.tab.message'), icon: 'mail' },
      { key: 'callback', label: t('offline.tab.callback'), icon: 'phone' },
    ];
    const tabList = h('div', { class: 'tabs', role: 'tablist', 'aria-label': heading },
      tabs.map((tab) => h('button', {
        type: 'button', role: 'tab', id: 'tab-' + tab.key, class: 'tab',
        'aria-selected': ui.offlineTab === tab.key ? 'true' : 'false', 'aria-controls': 'offline-panel',
        tabindex: ui.offlineTab === tab.key ? '0' : '-1',
        onclick: () => { rememberFormIfAny(); ui.offlineTab = tab.key; ui.formError = null; renderAll(); focusById('tab-' + tab.key); },
        onkeydown: (e) => {
          if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
            e.preventDefault();
            rememberFormIfAny();
            ui.offlineTab = ui.offlineTab === 'message' ? 'callback' : 'message';
            ui.formError = null;
            renderAll();
            focusById('tab-' + ui.offlineTab);
          }
        },
      }, icon(tab.icon, 'icon-sm'), tab.label)));
    const form = ui.offlineTab === 'callback' ? callbackForm() : messageForm();
    form.id = 'offline-form';
    const wrap = h('div', { class: 'form offline' },
      h('div', { class: 'intro' },
        h('h2', { class: 'intro-title', id: 'offline-heading', text: heading }),
        h('p', { class: 'intro-text', text: t('offline.intro') })),
      tabList,
      h('div', { id: 'offline-panel', role: 'tabpanel', 'aria-labelledby': 'tab-' + ui.offlineTab }, form),
      h('p', { class: 'center' }, h('button', { type: 'button', class: 'btn-link', onclick: () => { rememberFormIfAny(); ui.formError = null; loadStatus(); } },
        icon('refresh', 'icon-xs'), t('offline.recheck'))),
      h('p', { class: 'powered', text: t('powered') }));
    return wrap;
  }

  function rememberFormIfAny() {
    const f = document.querySelector('form.form, #offline-form');
    if (f) rememberForm(f);
  }

  function focusById(id) {
    const el = $(id);
    if (el) el.focus();
  }

  function messageForm() {
    const v = ui.formValues || {};
    const topics = topicOptions();
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' },
      h('span', { class: 'btn-spinner', 'aria-hidden': 'true' }), h('span', { class: 'btn-label', text: t('offline.send_message') }));
    const form = h('form', { class: 'subform', novalidate: true, dataset: { kind: 'message' } },
      formBanner(),
      field({ name: 'name', label: t('form.name'), placeholder: t('form.name_ph'), autocomplete: 'name', optional: true, value: v.name, maxlength: 100 }),
      h('div', { class: 'field-row' },
        field({ name: 'email', label: t('form.email'), type: 'email', placeholder: t('form.email_ph'), autocomplete: 'email', inputmode: 'email', value: v.email, maxlength: 254 }),
        field({ name: 'phone', label: t('form.phone'), type: 'tel', placeholder: t('form.phone_ph'), autocomplete: 'tel', inputmode: 'tel', value: v.phone, maxlength: 40 })),
      h('p', { class: 'hint hint-group', text: t('form.contact_hint') }),
      topics.length > 1 ? field({ name: 'topic', label: t('form.topic'), type: 'select', options: topics, value: v.topic || topics[0].value }) : null,
      field({ name: 'message', label: t('form.message'), type: 'textarea', placeholder: t('form.message_ph'), required: true, rows: 4, value: v.message, maxlength: 4000 }),
      submit);
    form.addEventListener('input', () => rememberForm(form));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      rememberForm(form);
      const ok = [validateText(form, 'name', false, 100), validateContact(form, false), validateText(form, 'message', true, 4000)].every(Boolean);
      if (!ok) { focusFirstError(form); return; }
      postOffline('/chat/messages', {
        name: formValue(form, 'name') || null,
        email: formValue(form, 'email') || null,
        phone: formValue(form, 'phone') || null,
        topic: formValue(form, 'topic') || null,
        language: lang,
        text: formValue(form, 'message'),
      }, submit, 'message', form);
    });
    return form;
  }

  function callbackForm() {
    const v = ui.formValues || {};
    const topics = topicOptions();
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' },
      h('span', { class: 'btn-spinner', 'aria-hidden': 'true' }), h('span', { class: 'btn-label', text: t('offline.send_callback') }));
    const form = h('form', { class: 'subform', novalidate: true, dataset: { kind: 'callback' } },
      formBanner(),
      field({ name: 'name', label: t('form.name'), placeholder: t('form.name_ph'), autocomplete: 'name', optional: true, value: v.name, maxlength: 100 }),
      field({ name: 'phone', label: t('form.phone'), type: 'tel', placeholder: t('form.phone_ph'), autocomplete: 'tel', inputmode: 'tel', required: true, hint: t('form.callback_phone_hint'), value: v.phone, maxlength: 40 }),
      topics.length > 1 ? field({ name: 'topic', label: t('form.topic'), type: 'select', options: topics, value: v.topic || topics[0].value }) : null,
      field({ name: 'note', label: t('form.note'), placeholder: t('form.note_ph'), optional: true, value: v.note, maxlength: 500 }),
      submit);
    form.addEventListener('input', () => rememberForm(form));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      rememberForm(form);
      const ok = [validateText(form, 'name', false, 100), validateContact(form, true), validateText(form, 'note', false, 500)].every(Boolean);
      if (!ok) { focusFirstError(form); return; }
      postOffline('/chat/callbacks', {
        name: formValue(form, 'name') || null,
        phone: formValue(form, 'phone'),
        topic: formValue(form, 'topic') || null,
        language: lang,
        text: formValue(form, 'note'),
      }, submit, 'callback', form);
    });
    return form;
  }

  async function postOffline(url, body, submit, kind, form) {
    busyButton(submit, true, t('offline.sending'));
    let res;
    let json = null;
    try {
      res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body), credentials: 'omit' });
      try { json = await res.json(); } catch (e) { json = null; }
    } catch (e) {
      ui.formError = t('err.network');
      renderAll();
      return;
    }
    if (res.status === 201 && json && json.reference) {
      ui.done = { kind, reference: String(json.reference), phone: body.phone || '' };
      ui.formError = null;
      ui.view = 'done';
      renderAll();
      focusById('done-heading');
      return;
    }
    const message = json && json.error && json.error.message ? String(json.error.message) : 'HTTP ' + res.status;
    if (res.status === 422 && /^(phone|email)/.test(message)) {
      ui.formError = null;
      busyButton(submit, false, kind === 'callback' ? t('offline.send_callback') : t('offline.send_message'));
      setFieldError(form, /^phone/.test(message) ? 'phone' : 'email', localizeServerField(message));
      focusFirstError(form);
      return;
    }
    ui.formError = res.status === 429 ? t('err.rate_limited_http') : t('err.server', { message });
    renderAll();
  }

  function doneView() {
    const d = ui.done || {};
    return h('div', { class: 'done', role: 'status' },
      h('div', { class: 'big-icon is-ok' }, icon('ok')),
      h('h2', { class: 'card-title', id: 'done-heading', tabindex: '-1', text: d.kind === 'callback' ? t('done.callback.heading') : t('done.message.heading') }),
      h('p', { class: 'muted', text: d.kind === 'callback' ? t('done.callback.text', { phone: d.phone }) : t('done.message.text') }),
      h('div', { class: 'reference' },
        h('span', { class: 'reference-label', text: t('done.reference') }),
        h('strong', { class: 'reference-value', id: 'done-reference', text: d.reference })),
      h('p', { class: 'hint', text: t('done.reference_hint') }),
      h('button', { type: 'button', class: 'btn', onclick: () => { ui.done = null; ui.formValues = Object.assign({}, ui.formValues, { message: '', note: '' }); ui.view = 'offline'; renderAll(); } }, t('done.back')));
  }

  // ---- chat: waiting card, messages, typing, end card

  function renderChatTop() {
    const top = $('chat-top');
    if (!top) return;
    const waiting = S && (S.state === 'queued' || S.state === 'starting');
    top.replaceChildren();
    top.hidden = !waiting;
    if (!waiting) return;
    const q = S.queue;
    const wait = q ? q.wait : (ui.status && ui.status.expected_wait_secs) || 0;
    const pos = q && q.position > 0 ? q.position : 0;
    top.append(h('div', { class: 'waiting', id: 'waiting', role: 'status' },
      h('div', { class: 'waiting-pulse', 'aria-hidden': 'true' }, icon('headset')),
      h('div', { class: 'waiting-text' },
        h('p', { class: 'waiting-title', text: t('waiting.title') }),
        pos ? h('p', { class: 'waiting-pos', id: 'queue-position', dataset: { position: String(pos) }, text: pos === 1 ? t('waiting.next') : t('waiting.position', { position: pos, ahead: pos - 1 }) }) : null,
        h('p', { class: 'waiting-wait', id: 'queue-wait', text: t('waiting.wait', { wait: formatWait(wait) }) }),
        h('p', { class: 'waiting-hint', text: t('waiting.hint') }))));
  }

  /** Rendered message rows by key, reused so that only changes touch the DOM (and the log region). */
  const msgNodes = new Map();

  function items() {
    const list = [];
    // Keyed by client_id where there is one, so a message keeps its row from "sending" to "read".
    for (const m of S.messages) list.push({ key: m.client_id ? 'c' + m.client_id : 's' + m.seq, kind: 'stored', m });
    const stored = knownClientIds();
    for (const o of S.outbox) if (!stored.has(o.client_id)) list.push({ key: 'c' + o.client_id, kind: 'outbox', m: o });
    for (const f of S.failed) if (!stored.has(f.client_id)) list.push({ key: 'c' + f.client_id, kind: 'failed', m: f });
    for (const u of ui.uploads) if (!stored.has(u.client_id)) list.push({ key: 'c' + u.client_id, kind: 'upload', m: u });
    // Stored by seq first; then what is not stored yet in the order it was written.
    const rank = (it) => (it.kind === 'stored' ? 0 : 1);
    list.sort((a, b) => rank(a) - rank(b) || (rank(a) === 0 ? a.m.seq - b.m.seq : (a.m.at || 0) - (b.m.at || 0)));
    return list;
  }

  function senderOf(it) {
    if (it.kind !== 'stored') return 'customer';
    return it.m.from;
  }

  function statusOf(it) {
    if (it.kind === 'outbox') return 'sending';
    if (it.kind === 'failed') return 'failed';
    if (it.kind === 'upload') return it.m.error ? 'failed' : 'sending';
    if (it.m.from !== 'customer') return null;
    return S.agentRead >= it.m.seq ? 'read' : 'sent';
  }

  function renderMessages(scroll) {
    const list = $('msg-list');
    if (!list || !S) return;
    const scroller = $('body');
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
    const all = items();
    const wanted = [];
    let prev = null;
    let lastOwn = null;
    for (const it of all) if (senderOf(it) === 'customer') lastOwn = it;
    for (const it of all) {
      const at = it.m.at || Date.now();
      if (!prev || dayKey(prev.m.at || Date.now()) !== dayKey(at)) {
        const k = 'd' + dayKey(at) + ':' + it.key;
        wanted.push(reuse(k, 'day:' + lang + ':' + formatDay(at), () => h('li', { class: 'day', role: 'presentation' }, h('span', { text: formatDay(at) }))));
      }
      const sender = senderOf(it);
      const grouped = prev && senderOf(prev) === sender && sender !== 'system'
        && (sender !== 'agent' || prev.m.name === it.m.name) && (at - (prev.m.at || 0)) < 5 * 60_000
        && dayKey(prev.m.at || 0) === dayKey(at);
      const sig = [lang, grouped ? 'g' : 'f', it.kind === 'upload' ? 'u' : 'm', it.m.text, it.m.name || '', it.m.error || '',
        it.m.attachment ? it.m.attachment.id : '', it.m.progress === undefined ? '' : 'p'].join('\u0001');
      const node = reuse(it.key, sig, () => buildMessage(it, grouped));
      if (it.kind === 'stored') node.dataset.seq = String(it.m.seq);
      updateStatus(node, it, it === lastOwn);
      wanted.push(node);
      prev = it;
    }
    // Put the wanted nodes in order with as few moves as possible.
    let cursor = list.firstChild;
    for (const node of wanted) {
      if (node === cursor) {
        cursor = cursor.nextSibling;
      } else {
        list.insertBefore(node, cursor);
      }
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    for (const [k, node] of msgNodes) if (!node.isConnected) msgNodes.delete(k);
    if (scroll || atBottom) scroller.scrollTop = scroller.scrollHeight;
    markSeen();
  }

  function reuse(key, sig, build) {
    const old = msgNodes.get(key);
    if (old && old.dataset.sig === sig) return old;
    const node = build();
    node.dataset.sig = sig;
    node.dataset.key = key;
    if (old && old.parentNode) old.replaceWith(node);
    msgNodes.set(key, node);
    return node;
  }

  function buildMessage(it, grouped) {
    const m = it.m;
    const sender = senderOf(it);
    if (sender === 'system') {
      const text = m.event === 'ended_customer' ? t('msg.ended_customer') : m.text;
      return h('li', { class: 'msg msg-system', dataset: { seq: String(m.seq), from: 'system', event: m.event || '' } },
        h('span', { class: 'msg-system-text' }, text),
        h('time', { class: 'msg-system-time', datetime: new Date(m.at).toISOString(), text: formatTime(m.at) }));
    }
    const own = sender === 'customer';
    const row = h('li', {
      class: 'msg ' + (own ? 'msg-own' : 'msg-agent') + (grouped ? ' is-grouped' : ''),
      dataset: Object.assign({ from: own ? 'customer' : 'agent' }, it.kind === 'stored' ? { seq: String(m.seq) } : {}, m.client_id ? { clientId: m.client_id } : {}),
    });
    if (!own && !grouped) {
      row.append(h('div', { class: 'msg-avatar', 'aria-hidden': 'true', text: initials(m.name || t('msg.agent')) }));
    }
    const col = h('div', { class: 'msg-col' });
    if (!own && !grouped) col.append(h('div', { class: 'msg-name', text: m.name || t('msg.agent') }));
    const bubble = h('div', { class: it.kind === 'upload' || m.attachment ? 'bubble is-file' : 'bubble' });
    if (it.kind === 'upload') bubble.append(uploadChip(m));
    else if (m.attachment) bubble.append(attachmentChip(m.attachment));
    else bubble.append(h('span', { class: 'msg-text' }, linkify(m.text)));
    col.append(bubble);
    const meta = h('div', { class: 'msg-meta' },
      h('time', { class: 'msg-time', datetime: new Date(m.at || Date.now()).toISOString(), text: formatTime(m.at || Date.now()) }));
    if (own) meta.append(h('span', { class: 'msg-status' }));
    col.append(meta);
    row.append(col);
    return row;
  }

  const STATUS_ICON = { sending: 'clock', sent: 'check', read: 'checks', failed: 'alert' };

  function updateStatus(node, it, isLast) {
    const st = statusOf(it);
    if (!st) return;
    const label = t('msg.status.' + st);
    const key = st + (isLast ? ':last' : '') + ':' + lang;
    if (node.dataset.status === st && node.dataset.statusKey === key) return;
    node.dataset.status = st;
    node.dataset.statusKey = key;
    const el = node.querySelector('.msg-status');
    if (!el) return;
    el.className = 'msg-status is-' + st;
    // The last own message shows its state in words, the others only as an icon.
    el.replaceChildren(icon(STATUS_ICON[st], 'icon-xs'), h('span', { class: isLast || st === 'failed' ? 'msg-status-text' : 'sr-only', text: label }));
  }

  function attachmentChip(a) {
    const url = attachmentUrl(a.id);
    const isImage = /^image\/(png|jpeg|gif|webp)$/.test(a.content_type);
    const meta = h('span', { class: 'file-meta' }, h('span', { class: 'file-name', text: a.name }), h('span', { class: 'file-size', text: formatBytes(a.size) }));
    if (isImage) {
      return h('a', { class: 'file is-image', href: url, download: a.name, 'aria-label': t('file.download', { name: a.name }) },
        h('img', { class: 'file-thumb', src: url, alt: a.name, loading: 'lazy', decoding: 'async' }),
        h('span', { class: 'file-bar' }, meta, icon('download', 'icon-sm')));
    }
    return h('a', { class: 'file', href: url, download: a.name, 'aria-label': t('file.download', { name: a.name }) },
      h('span', { class: 'file-icon', 'aria-hidden': 'true' }, icon('file')), meta, icon('download', 'icon-sm file-dl'));
  }

  function uploadChip(u) {
    const meta = h('span', { class: 'file-meta' }, h('span', { class: 'file-name', text: u.name }),
      h('span', { class: 'file-size', 'data-progress-text': '', text: u.error ? formatBytes(u.size) : t('upload.progress', { percent: u.progress }) }));
    const chip = h('div', { class: 'file is-uploading' + (u.blobUrl ? ' is-image' : '') + (u.error ? ' is-failed' : '') },
      u.blobUrl ? h('img', { class: 'file-thumb', src: u.blobUrl, alt: u.name }) : null,
      h('span', { class: u.blobUrl ? 'file-bar' : 'file-row' },
        u.blobUrl ? null : h('span', { class: 'file-icon', 'aria-hidden': 'true' }, icon('file')), meta),
      u.error ? null : h('span', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(u.progress), 'aria-label': u.name },
        h('span', { class: 'progress-bar', 'data-progress-bar': '' })));
    const wrap = h('div', { class: 'upload' }, chip);
    if (u.error) {
      wrap.append(h('p', { class: 'upload-error', role: 'alert', text: u.error }),
        h('div', { class: 'upload-actions' },
          u.retryable ? h('button', { type: 'button', class: 'btn-link', onclick: () => upload(u) }, t('upload.retry')) : null,
          h('button', { type: 'button', class: 'btn-link', onclick: () => { removeUpload(u); renderMessages(); } }, t('upload.remove'))));
    }
    setTimeout(() => updateUploadProgress(u), 0);
    return wrap;
  }

  function updateUploadProgress(u) {
    const node = msgNodes.get('c' + u.client_id);
    if (!node) return;
    const bar = node.querySelector('[data-progress-bar]');
    if (bar) bar.style.width = u.progress + '%'; // CSSOM: allowed by the CSP
    const pb = node.querySelector('[role="progressbar"]');
    if (pb) pb.setAttribute('aria-valuenow', String(u.progress));
    const txt = node.querySelector('[data-progress-text]');
    if (txt && !u.error) txt.textContent = t('upload.progress', { percent: u.progress });
  }

  let typingHideTimer = null;
  function renderTyping() {
    const el = $('typing');
    if (!el) return;
    clearTimeout(typingHideTimer);
    const ty = ui.agentTyping;
    const show = ty && ty.until > Date.now() && S && S.state !== 'ended';
    el.replaceChildren();
    el.hidden = !show;
    if (!show) return;
    el.append(h('span', { class: 'typing-dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
      h('span', { class: 'typing-text', text: ty.name ? t('typing.named', { name: ty.name }) : t('typing.anon') }));
    // A lost "stopped typing" frame must not leave the dots forever.
    typingHideTimer = setTimeout(() => { ui.agentTyping = null; renderTyping(); }, ty.until - Date.now());
    const scroller = $('body');
    if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80) scroller.scrollTop = scroller.scrollHeight;
  }

  function renderChatEnd() {
    const el = $('chat-end');
    if (!el) return;
    const wasShown = !!el.firstChild;
    el.replaceChildren();
    if (!S || S.state !== 'ended') {
      el.hidden = true;
      return;
    }
    el.hidden = false;
    // Just ended: the closing card comes into view.
    if (!wasShown) setTimeout(() => { const b = $('body'); if (b) b.scrollTop = b.scrollHeight; }, 0);
    el.append(h('div', { class: 'ended-card', id: 'ended-card', role: 'status' },
      h('div', { class: 'big-icon is-ok small' }, icon('ok')),
      h('h2', { class: 'card-title', text: t('ended.title') }),
      h('p', { class: 'muted', text: t('ended.text') }),
      h('div', { class: 'ended-actions' },
        S.token ? h('a', { class: 'btn', id: 'transcript-link', href: '/chat/transcript?token=' + encodeURIComponent(S.token), download: '' }, icon('download', 'icon-sm'), t('ended.transcript')) : null,
        h('button', { type: 'button', class: 'btn btn-primary', id: 'new-chat', onclick: newChat }, icon('chat', 'icon-sm'), t('ended.new')))));
  }

  function newChat() {
    const profile = S && S.profile ? Object.assign({}, S.profile) : {};
    endSession();
    ui.formValues = { name: profile.name || '', email: profile.email || '', phone: profile.phone || '', topic: profile.topic || '', message: '' };
    ui.formError = null;
    ui.topicStatus = null;
    loadStatus();
  }

  // ---- composer

  let composing = false;

  function buildComposer() {
    const foot = $('composer');
    foot.hidden = false;
    const file = h('input', { type: 'file', id: 'file-input', class: 'sr-only', tabindex: '-1', 'aria-hidden': 'true',
      accept: UPLOAD_TYPES.join(',') + ',.png,.jpg,.jpeg,.gif,.webp,.pdf,.txt' });
    const attach = h('button', { type: 'button', class: 'icon-btn composer-btn', id: 'attach-btn', 'aria-label': t('composer.attach'), title: t('composer.attach') }, icon('clip'));
    const box = h('textarea', { id: 'composer-input', class: 'composer-input', rows: '1', 'aria-label': t('composer.label'),
      placeholder: t('composer.placeholder'), autocomplete: 'off', enterkeyhint: 'send', 'aria-describedby': 'composer-hint composer-notice' });
    const sendBtn = h('button', { type: 'button', class: 'send-btn', id: 'send-btn', 'aria-label': t('composer.send'), title: t('composer.send') }, icon('send'));
    const notice = h('p', { class: 'composer-notice', id: 'composer-notice', role: 'alert', hidden: true });
    const hint = h('div', { class: 'composer-foot' },
      h('span', { class: 'composer-hint', id: 'composer-hint', text: t('composer.hint') }),
      h('span', { class: 'composer-count', id: 'composer-count', hidden: true }));
    foot.replaceChildren(notice, h('div', { class: 'composer-row' }, attach, box, sendBtn), hint, file);

    box.value = readDraft();
    autosize(box);
    attach.addEventListener('click', () => file.click());
    file.addEventListener('change', () => {
      pickFiles(file.files);
      file.value = '';
    });
    sendBtn.addEventListener('click', () => { submitComposer(); box.focus(); });
    box.addEventListener('compositionstart', () => { composing = true; });
    box.addEventListener('compositionend', () => { composing = false; });
    box.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' && e.keyCode !== 13 && e.keyCode !== 229) return;
      // Enter that confirms an IME candidate (Chinese pinyin, zhuyin, …) never sends.
      if (e.isComposing || e.keyCode === 229 || composing) return;
      if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey) return;
      e.preventDefault();
      submitComposer();
    });
    box.addEventListener('input', () => {
      autosize(box);
      writeDraft(box.value);
      updateCount(box);
      if (ui.notice && ui.notice.kind === 'warn' && !box.value) clearNotice();
      onDraftInput(box.value);
    });
    box.addEventListener('blur', () => stopTyping(true));
    box.addEventListener('paste', (e) => {
      const files = e.clipboardData && Array.from(e.clipboardData.files || []);
      if (files && files.length && S && S.token) {
        e.preventDefault();
        pickFiles(files);
      }
    });
    // Drop a file anywhere on the chat.
    const app = $('app');
    app.ondragover = (e) => { if (S && S.token && S.state !== 'ended') { e.preventDefault(); app.classList.add('is-drop'); } };
    app.ondragleave = () => app.classList.remove('is-drop');
    app.ondrop = (e) => {
      app.classList.remove('is-drop');
      if (!S || !S.token || S.state === 'ended') return;
      e.preventDefault();
      pickFiles(e.dataTransfer && e.dataTransfer.files);
    };
    updateCount(box);
  }

  function autosize(box) {
    box.style.height = 'auto'; // CSSOM, allowed by the CSP
    box.style.height = Math.min(box.scrollHeight, 120) + 'px';
  }

  function maxChars() {
    return (ui.status && ui.status.max_message_chars) || 2000;
  }

  function updateCount(box) {
    const c = $('composer-count');
    if (!c) return;
    const n = box.value.length;
    const max = maxChars();
    c.hidden = n < max * 0.8;
    c.textContent = t('composer.count', { count: n, max });
    c.classList.toggle('is-over', n > max);
  }

  function submitComposer() {
    const box = $('composer-input');
    if (!box || !S || S.state === 'ended') return;
    const text = box.value.trim();
    if (!text) return;
    if (text.length > maxChars()) {
      showNotice(t('err.too_long', { count: text.length, max: maxChars() }), 'warn');
      return;
    }
    clearNotice();
    ui.restored = '';
    box.value = '';
    writeDraft('');
    autosize(box);
    updateCount(box);
    sendText(text);
  }

  /**
   * A refused message goes back into the box, in the order it was written: after the texts
   * restored before it, before whatever the customer has typed since.
   */
  function restoreToComposer(text) {
    const box = $('composer-input');
    if (!box) return;
    const prev = ui.restored || '';
    const keepsPrev = prev && box.value.startsWith(prev);
    const rest = (keepsPrev ? box.value.slice(prev.length) : box.value).replace(/^\n/, '');
    const block = keepsPrev ? prev + '\n' + text : text;
    box.value = rest.trim() ? block + '\n' + rest : block;
    ui.restored = block;
    writeDraft(box.value);
    autosize(box);
    updateCount(box);
  }

  let noticeTimer = null;
  function showNotice(text, kind) {
    ui.notice = { text, kind };
    const el = $('composer-notice');
    if (!el) return;
    el.hidden = false;
    el.className = 'composer-notice is-' + kind;
    el.replaceChildren(icon('alert', 'icon-xs'), h('span', { text }));
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(clearNotice, 12_000);
  }

  function clearNotice() {
    ui.notice = null;
    const el = $('composer-notice');
    if (el) {
      el.hidden = true;
      el.replaceChildren();
    }
  }

  function renderComposerState() {
    const foot = $('composer');
    if (!foot) return;
    const ended = !S || S.state === 'ended';
    foot.hidden = ended;
    const attach = $('attach-btn');
    if (attach) attach.disabled = !S || !S.token;
  }

  // ---- end-of-chat confirmation

  function renderOverlay() {
    const ov = $('overlay');
    ov.replaceChildren();
    ov.hidden = !ui.confirmEnd;
    if (!ui.confirmEnd) return;
    const no = h('button', { type: 'button', class: 'btn', id: 'end-cancel', onclick: () => { ui.confirmEnd = false; renderOverlay(); focusById('end-btn'); } }, t('end.no'));
    const yes = h('button', { type: 'button', class: 'btn btn-danger', id: 'end-confirm', onclick: confirmEnd }, t('end.yes'));
    const dlg = h('div', { class: 'dialog', role: 'alertdialog', 'aria-modal': 'true', 'aria-labelledby': 'end-title', 'aria-describedby': 'end-text' },
      h('h2', { class: 'card-title', id: 'end-title', text: t('end.title') }),
      h('p', { class: 'muted', id: 'end-text', text: t('end.text') }),
      h('div', { class: 'dialog-actions' }, no, yes));
    dlg.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.stopPropagation(); no.click(); }
      if (e.key === 'Tab') { // keep the focus in the dialog
        e.preventDefault();
        (document.activeElement === yes ? no : yes).focus();
      }
    });
    ov.append(dlg);
    setTimeout(() => yes.focus(), 0);
  }

  function confirmEnd() {
    ui.confirmEnd = false;
    if (!S) return;
    if (!S.token) {
      // Not started yet: nothing on the hub to end.
      newChat();
      return;
    }
    if (!send({ type: 'end' })) {
      // Offline: end it once connected again.
      S.pendingEnd = true;
      save();
    }
    renderOverlay();
  }

  // ------------------------------------------------------------------ status

  async function fetchStatus(topic) {
    const q = new URLSearchParams();
    if (topic) q.set('topic', topic);
    q.set('lang', lang);
    const res = await fetch('/chat/status?' + q.toString(), { credentials: 'omit', headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    return res.json();
  }

  async function loadStatus() {
    ui.view = 'loading';
    renderAll();
    try {
      ui.status = await fetchStatus(null);
    } catch (e) {
      ui.view = 'status_error';
      renderAll();
      return;
    }
    ui.topicStatus = null;
    ui.view = ui.status.open ? 'prechat' : 'offline';
    renderAll();
    if (ui.open) focusFirst();
  }

  /** Focus into the window when it opens; on touch screens not into a text field (no surprise keyboard). */
  function focusFirst() {
    if (!ui.open) return;
    const touch = window.matchMedia && window.matchMedia('(pointer: coarse)').matches;
    let el;
    if (ui.view === 'chat') el = S && S.state !== 'ended' ? (touch ? null : $('composer-input')) : $('new-chat');
    else if (!touch) el = document.querySelector('#body input') || document.querySelector('#body textarea') || document.querySelector('#body button');
    if (!el || el.disabled) el = $('head-title');
    if (!el) return;
    try { el.focus({ preventScroll: true }); } catch (e) { el.focus(); }
  }

  // ------------------------------------------------------------------ the "new messages" pill

  function updateNewPill() {
    const scroller = $('body');
    let pill = $('new-pill');
    if (!S || ui.view !== 'chat' || !scroller) {
      if (pill) pill.remove();
      return;
    }
    const unseen = S.messages.some((m) => m.seq > S.seenSeq && m.from !== 'customer');
    const away = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight > 80;
    if (unseen && away) {
      if (!pill) {
        pill = h('button', { type: 'button', class: 'new-pill', id: 'new-pill', onclick: () => { scroller.scrollTop = scroller.scrollHeight; } },
          icon('arrowDown', 'icon-xs'), t('new_messages'));
        $('app').append(pill);
      }
    } else if (pill) {
      pill.remove();
    }
  }

  // ------------------------------------------------------------------ start-up and global events

  function applyLang(l) {
    lang = LANGS.includes(l) ? l : 'en';
    document.documentElement.lang = lang;
  }

  let booted = false;

  /** Where the state is kept decides when the window can start: at once, or once the host page answered. */
  function init() {
    applyAccent(CONFIG.color);
    ui.parentOrigin = parentOrigin();
    if (localStorageWorks()) {
      store.mode = 'local';
    } else if (CONFIG.embedded) {
      store.mode = 'parent';
      postToParent({ type: 'hello', storage: 'parent' });
      setTimeout(boot, 2500); // an old or missing widget.js never answers: start without history
      return;
    }
    boot();
  }

  function boot() {
    if (booted) return;
    booted = true;
    document.documentElement.dataset.storage = store.mode;
    start();
  }

  function start() {
    const stored = readStore();
    applyLang(LANGS.includes(stored.lang) ? stored.lang : CONFIG.lang || detectLang());
    if (CONFIG.embedded && typeof stored.open === 'boolean') ui.open = stored.open;
    if (!ui.page && document.referrer) ui.page = document.referrer.slice(0, 500);
    S = loadSession(stored.session);

    $('lang-select').addEventListener('change', (e) => {
      rememberFormIfAny();
      applyLang(e.target.value);
      save();
      if (ui.view === 'chat') {
        // Texts of the composer and every row are rebuilt in the new language.
        renderedView = null;
      }
      renderAll();
    });
    $('close-btn').addEventListener('click', () => {
      setOpen(false);
      postToParent({ type: 'close' });
    });
    $('end-btn').addEventListener('click', () => {
      ui.confirmEnd = true;
      renderOverlay();
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !ui.confirmEnd && CONFIG.embedded) {
        setOpen(false);
        postToParent({ type: 'close', focus: true });
      }
    });
    $('body').addEventListener('scroll', () => markSeen(), { passive: true });
    window.addEventListener('focus', () => markSeen());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') {
        markSeen();
        if (needSocket() && !ws) { attempt = 0; connect(); }
      }
    });
    window.addEventListener('online', () => {
      if (needSocket() && !ws) { attempt = 0; connect(); }
    });
    window.addEventListener('offline', () => {
      // The socket may linger on a dead network: drop it so the outbox waits visibly.
      if (ws) dropSocket(true);
      else setConn('offline');
    });
    window.addEventListener('storage', (e) => {
      if (store.mode !== 'local' || e.key !== STORE_KEY || !e.newValue) return;
      // Another tab of the same site changed the session.
      let v;
      try { v = JSON.parse(e.newValue); } catch (err) { return; }
      const other = loadSession(v && v.session);
      if (!other && S && S.token) return;
      if (other && S && other.token === S.token) {
        for (const m of other.messages) {
          const entry = addStored(m);
          if (entry) onStoredEvent(entry, false);
        }
        if (other.state === 'ended') S.state = 'ended';
        renderAll();
      }
    });

    if (S) {
      ui.view = 'chat';
      renderAll();
      connect();
      // Limits for attachments and message length.
      fetchStatus(null).then((st) => { ui.status = st; renderChatTop(); }).catch(() => {});
    } else {
      loadStatus();
    }
    postToParent({ type: 'ready', open: ui.open });
    if (ui.open) setTimeout(focusFirst, 60);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
