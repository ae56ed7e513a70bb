package mysqlcdc

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/client"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"
)

// connect opens a connection to d whose text is utf8mb4 both ways: the
// client library's default (utf8, three bytes at most) turns emoji into
// '?', and a server defaulting to latin1 mangles every non-Latin letter.
func connect(ctx context.Context, d dsn, timeout time.Duration) (*client.Conn, error) {
	c, err := client.ConnectWithContext(ctx, d.addr(), d.user, d.password, "", timeout, d.options()...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", d.addr(), err)
	}
	// Always said: the library skips SET NAMES for the charset it believes
	// is set, which the server, defaulting to its own, may not have taken.
	if _, err := c.Execute("SET NAMES utf8mb4"); err != nil {
		c.Close()
		return nil, fmt.Errorf("setting the connection charset of %s to utf8mb4: %w", d.addr(), err)
	}
	return c, nil
}

// charsets are the MySQL/MariaDB charsets the binlog's text is decoded
// from (MySQL's latin1 is Windows-1252). utf8, utf8mb3, utf8mb4 and ascii
// are UTF-8 already.
var charsets = map[string]encoding.Encoding{
	"latin1":   charmap.Windows1252,
	"latin2":   charmap.ISO8859_2,
	"latin5":   charmap.ISO8859_9,
	"latin7":   charmap.ISO8859_13,
	"cp1250":   charmap.Windows1250,
	"cp1251":   charmap.Windows1251,
	"cp1256":   charmap.Windows1256,
	"cp1257":   charmap.Windows1257,
	"cp850":    charmap.CodePage850,
	"cp852":    charmap.CodePage852,
	"cp866":    charmap.CodePage866,
	"koi8r":    charmap.KOI8R,
	"koi8u":    charmap.KOI8U,
	"greek":    charmap.ISO8859_7,
	"hebrew":   charmap.ISO8859_8,
	"macroman": charmap.Macintosh,
	"gbk":      simplifiedchinese.GBK,
	"gb2312":   simplifiedchinese.GBK,
	"gb18030":  simplifiedchinese.GB18030,
	"big5":     traditionalchinese.Big5,
	"sjis":     japanese.ShiftJIS,
	"cp932":    japanese.ShiftJIS,
	"ujis":     japanese.EUCJP,
	"eucjpms":  japanese.EUCJP,
	"euckr":    korean.EUCKR,
	"ucs2":     unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM),
	"utf16":    unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM),
	"utf16le":  unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM),
	"utf32":    utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM),
}

// decodeCharset turns text of charset cs into UTF-8. Text of a charset it
// does not know passes when it is valid UTF-8 (ASCII, most often) and
// fails otherwise: never a replacement character in place of data.
func decodeCharset(cs string, b []byte) (string, error) {
	switch cs {
	case "", "utf8", "utf8mb3", "utf8mb4", "ascii":
		return string(b), nil
	}
	if enc, ok := charsets[cs]; ok {
		out, err := enc.NewDecoder().Bytes(b)
		if err != nil {
			return "", fmt.Errorf("decoding %s text: %w", cs, err)
		}
		return string(out), nil
	}
	if utf8.Valid(b) {
		return string(b), nil
	}
	return "", fmt.Errorf("text in charset %s, which mysql-cdc-source does not decode", cs)
}
