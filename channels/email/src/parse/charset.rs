//! Decoding bytes whose charset is undeclared or wrong: raw 8-bit headers and bodies from
//! mailers that skip RFC 2047, common in Chinese mail.

use encoding_rs::{Encoding, BIG5, GB18030, UTF_8};

/// Characters frequent in Chinese text, shared by both scripts or specific to one. Text
/// decoded with the wrong charset is full of rare characters, so the count tells them apart.
const FREQUENT_SHARED: &str = "的一是不了在人有我他个中大上到说们和你地出也年就要时以生会自着去之过家学可下对里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切望您谢收请问您好";
const SIMPLIFIED_ONLY: &str = "这们来时为说国会过对学么动开从现无经长儿还发当没点样问关电话觉给进见头车东业买卖让认识写听贵单号码应该谁请谢货订务费额账户银";
const TRADITIONAL_ONLY: &str = "這們來時為說國會過對學麼動開從現無經長兒還發當沒點樣問關電話覺給進見頭車東業買賣讓認識寫聽貴單號碼應該誰請謝貨訂務費額賬戶銀";

fn score(text: &str) -> usize {
    text.chars()
        .filter(|c| {
            !c.is_ascii()
                && (FREQUENT_SHARED.contains(*c)
                    || SIMPLIFIED_ONLY.contains(*c)
                    || TRADITIONAL_ONLY.contains(*c))
        })
        .count()
}

/// Simplified vs Traditional Chinese characters in `text` (counts of script-specific ones).
pub fn script_counts(text: &str) -> (usize, usize) {
    let mut simplified = 0;
    let mut traditional = 0;
    for c in text.chars().filter(|c| !c.is_ascii()) {
        if SIMPLIFIED_ONLY.contains(c) {
            simplified += 1;
        } else if TRADITIONAL_ONLY.contains(c) {
            traditional += 1;
        }
    }
    (simplified, traditional)
}

/// The encoding for a MIME charset label (`gb2312`, `big5`, `iso-8859-1`, ...).
pub fn encoding_for_label(label: &str) -> Option<&'static Encoding> {
    let label = label.trim().trim_matches('"');
    // GB2312 mail is often really GBK/GB18030; the superset decodes both.
    if label.eq_ignore_ascii_case("gb2312") || label.eq_ignore_ascii_case("gbk") {
        return Some(GB18030);
    }
    Encoding::for_label(label.as_bytes())
}

/// Decodes bytes of unknown charset: UTF-8 if valid, else the declared `hint` if it decodes
/// cleanly, else whichever of GB18030 and Big5 decodes cleanly and reads most like Chinese.
/// Returns the text and the encoding used.
pub fn decode_guess(bytes: &[u8], hint: Option<&'static Encoding>) -> (String, &'static Encoding) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_string(), UTF_8);
    }
    if let Some(enc) = hint.filter(|e| *e != UTF_8) {
        if let Some(s) = enc.decode_without_bom_handling_and_without_replacement(bytes) {
            return (s.into_owned(), enc);
        }
    }
    let gb = GB18030.decode_without_bom_handling_and_without_replacement(bytes);
    let big5 = BIG5.decode_without_bom_handling_and_without_replacement(bytes);
    match (gb, big5) {
        (Some(g), Some(b)) => {
            if score(&b) > score(&g) {
                (b.into_owned(), BIG5)
            } else {
                (g.into_owned(), GB18030)
            }
        }
        (Some(g), None) => (g.into_owned(), GB18030),
        (None, Some(b)) => (b.into_owned(), BIG5),
        (None, None) => {
            let enc = hint.unwrap_or(GB18030);
            (enc.decode_without_bom_handling(bytes).0.into_owned(), enc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_gbk_and_big5() {
        let text = "您好，我的订单还没有发货，请问什么时候能到？";
        let (gbk, _, _) = GB18030.encode(text);
        assert_eq!(decode_guess(&gbk, None).0, text);
        let trad = "您好，我的訂單還沒有發貨，請問什麼時候能到？";
        let (big5, _, _) = BIG5.encode(trad);
        let (decoded, enc) = decode_guess(&big5, None);
        assert_eq!(decoded, trad);
        assert_eq!(enc, BIG5);
        assert_eq!(
            decode_guess("plain ascii".as_bytes(), None).0,
            "plain ascii"
        );
    }

    #[test]
    fn hint_wins_when_it_decodes() {
        let (latin, _, _) = encoding_rs::WINDOWS_1252.encode("café");
        let hint = encoding_for_label("iso-8859-1");
        assert_eq!(decode_guess(&latin, hint).0, "café");
    }

    #[test]
    fn script_counts_tell_simplified_from_traditional() {
        assert!(script_counts("这个问题怎么办").0 > 0);
        let (s, t) = script_counts("這個問題怎麼辦");
        assert!(t > s);
    }
}
