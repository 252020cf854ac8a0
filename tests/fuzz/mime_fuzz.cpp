// libFuzzer target for the MIME parser: parses the input, reads every accessor and checks
// the structural promises that IMAP relies on. A broken promise aborts, so the fuzzer
// reports it like a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "postern/mail/address.hpp"
#include "postern/mail/ip.hpp"
#include "postern/mail/mime.hpp"
#include "postern/mail/text.hpp"

namespace mime = postern::mail;

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "mime invariant broken: %s\n", what);
    std::abort();
  }
}

// Keeps the optimizer from dropping results that are only computed.
volatile size_t g_sink = 0;

void touch(std::string_view s) { g_sink = g_sink + s.size(); }

void check(const mime::Message& m) {
  const auto& parts = m.parts();
  require(!parts.empty(), "root part exists");
  require(parts[0].raw_offset == 0 && parts[0].raw_length == m.raw().size(), "root spans raw");
  require(&m.headers() == &parts[0].headers, "headers() is the root's");
  for (size_t i = 0; i < parts.size(); ++i) {
    const mime::Part& p = parts[i];
    require(p.raw_offset <= m.raw().size() && p.raw_length <= m.raw().size() - p.raw_offset, "raw range");
    require(p.body_offset == p.raw_offset + p.header_length, "body follows header");
    require(p.body_offset + p.body_length == p.raw_offset + p.raw_length, "body ends the part");
    require(p.body_lines <= p.body_length, "line count");
    if (i == 0) {
      require(p.parent == -1 && p.depth == 0 && p.section.empty(), "root identity");
    } else {
      require(p.parent >= 0 && static_cast<size_t>(p.parent) < i, "parent precedes child");
      const mime::Part& parent = parts[static_cast<size_t>(p.parent)];
      require(p.depth == parent.depth + 1, "depth");
      require(p.raw_offset >= parent.body_offset &&
                  p.raw_offset + p.raw_length <= parent.body_offset + parent.body_length,
              "child inside parent body");
      require(parent.is_multipart() || parent.is_message(), "only containers have children");
    }
    size_t previous_end = p.body_offset;
    for (size_t c : p.children) {
      require(c < parts.size() && parts[c].parent == static_cast<int>(i), "child links back");
      require(parts[c].raw_offset >= previous_end, "children in order");
      previous_end = parts[c].raw_offset + parts[c].raw_length;
    }
    for (const mime::Header& h : p.headers) {
      require(h.raw_offset <= m.raw().size() && h.raw_length <= m.raw().size() - h.raw_offset, "field range");
      require(h.raw_offset >= p.raw_offset, "field inside its part");
      touch(h.name);
      touch(h.raw_value);
      touch(h.value);
    }
    touch(p.content_type.type);
    touch(p.content_type.subtype);
    for (const auto& [name, value] : p.content_type.params) touch(name), touch(value);
    for (const auto& [name, value] : p.disposition_params) touch(name), touch(value);
    touch(p.section);
    touch(p.charset);
    touch(p.filename);
    touch(p.disposition);
    touch(p.transfer_encoding);
    touch(p.content_id);
    touch(p.description);
    touch(p.md5);
    touch(p.language);
    touch(p.location);
    touch(m.decoded_body(i));
  }
  touch(m.decoded_body(parts.size()));
  for (std::string_view name : {"subject", "From", "to", "content-type"}) {
    for (size_t nth = 0; nth < 3; ++nth) {
      if (auto v = m.header(name, nth)) touch(*v);
    }
  }
  g_sink = g_sink + (m.truncated() ? 1 : 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const mime::Message full = mime::Message::parse(std::string(input));
  check(full);

  // Small limits reach the truncation paths quickly.
  mime::Message::Limits tight;
  tight.max_parts = 8;
  tight.max_depth = 3;
  tight.max_headers = 16;
  tight.max_header_bytes = 256;
  const mime::Message small = mime::Message::parse(std::string(input), tight);
  check(small);
  require(small.parts().size() <= 8, "part limit");
  for (const mime::Part& p : small.parts()) require(p.depth <= 3, "depth limit");

  // Dovecot's reading, as IMAP parses: junk header lines kept, encoded messages nested.
  mime::Message::Options imap;
  imap.keep_junk_header_lines = true;
  imap.parse_encoded_messages = true;
  imap.exact_boundaries = true;
  check(mime::Message::parse(std::string(input), {}, imap));
  check(mime::Message::parse(std::string(input), tight, imap));

  // The free helpers on the raw input; the first line doubles as a charset name.
  const std::string_view first_line = input.substr(0, input.find('\n'));
  touch(mime::decode_rfc2047(input));
  touch(mime::unfold(input));
  touch(mime::decode_base64(input));
  touch(mime::decode_quoted_printable(input));
  touch(mime::to_utf8(input, first_line.substr(0, 40)));
  const mime::ContentType ct = mime::parse_content_type(input);
  touch(ct.type);
  for (const auto& [name, value] : mime::parse_params(input)) touch(name), touch(value);
  for (const mime::RawParam& p : mime::parse_raw_params(input)) touch(p.name), touch(p.value), touch(p.octets);
  if (const auto mt = mime::parse_media_type(input)) touch(mt->subtype);
  touch(mime::parse_raw_disposition(input).type);
  for (const std::string& tag : mime::parse_content_language(input)) touch(tag);
  for (const mime::Address& a : mime::parse_address_list(input)) {
    touch(a.local_part);
    touch(a.domain);
    touch(a.route);
    if (a.display_name) touch(*a.display_name);
  }
  touch(mime::decode_base64_strict(input).value_or(""));
  if (const auto range = mime::IpRange::parse(first_line)) {
    require(range->contains(range->first) && range->contains(range->last), "range ends");
  }

  // Text extraction: the caps hold, whatever the input.
  mime::TextExtractOptions cap;
  cap.max_bytes = 64;
  cap.include_attachments = true;
  const mime::ExtractedText text = mime::extract_text(full, cap);
  require(text.text.size() <= 64, "text cap");
  touch(mime::extract_text(small).text);
  require(mime::html_to_text(input, 100).size() <= 100, "html cap");
  return 0;
}
