#include "core/dns/response_parser.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::dns {
namespace {

constexpr uint16_t kTypeTlsa = 52;  // RFC 6698; <arpa/nameser.h> predates it
constexpr int kHeaderSize = 12;
constexpr int kRrFixedSize = 10;  // type, class, ttl, rdlength

struct RawRr {
  std::string owner;
  uint16_t type = 0;
  uint16_t rr_class = 0;
  uint32_t ttl = 0;
  const unsigned char* rdata = nullptr;
  uint16_t rdlen = 0;
};

// The answer and authority sections of a response, walked once; c-ares 1.18
// hands out no TTLs for most types and nothing for the authority section.
struct RawMessage {
  std::vector<RawRr> answer;
  std::vector<RawRr> authority;
};

uint16_t read16(const unsigned char* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

uint32_t read32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string printable_name(std::string name) { return name.empty() ? std::string(".") : name; }

// ares_expand_name follows compression pointers through `abuf` and bounds-checks them.
std::optional<std::string> expand_name(const unsigned char* p, const unsigned char* abuf, int alen,
                                       long* consumed) {
  if (p < abuf || p >= abuf + alen) return std::nullopt;
  char* s = nullptr;
  if (ares_expand_name(p, abuf, alen, &s, consumed) != ARES_SUCCESS) return std::nullopt;
  std::string out(s);
  ares_free_string(s);
  return out;
}

std::optional<RawMessage> parse_raw(const unsigned char* abuf, int alen) {
  if (abuf == nullptr || alen < kHeaderSize) return std::nullopt;
  const unsigned qdcount = read16(abuf + 4);
  const unsigned ancount = read16(abuf + 6);
  const unsigned nscount = read16(abuf + 8);
  const unsigned char* p = abuf + kHeaderSize;
  const unsigned char* end = abuf + alen;
  for (unsigned i = 0; i < qdcount; ++i) {
    long len = 0;
    if (!expand_name(p, abuf, alen, &len)) return std::nullopt;
    if (end - p < len + 4) return std::nullopt;
    p += len + 4;
  }
  RawMessage msg;
  for (unsigned i = 0; i < ancount + nscount; ++i) {
    long len = 0;
    auto owner = expand_name(p, abuf, alen, &len);
    if (!owner || end - p < len + kRrFixedSize) return std::nullopt;
    p += len;
    RawRr rr;
    rr.owner = std::move(*owner);
    rr.type = read16(p);
    rr.rr_class = read16(p + 2);
    rr.ttl = read32(p + 4);
    // RFC 2181 §8: a TTL with the most significant bit set is treated as zero.
    if (rr.ttl > 0x7fffffffU) rr.ttl = 0;
    rr.rdlen = read16(p + 8);
    p += kRrFixedSize;
    if (end - p < rr.rdlen) return std::nullopt;
    rr.rdata = p;
    p += rr.rdlen;
    (i < ancount ? msg.answer : msg.authority).push_back(std::move(rr));
  }
  return msg;
}

struct Soa {
  std::string mname, rname;
  uint32_t serial = 0, refresh = 0, retry = 0, expire = 0, minimum = 0;
};

std::optional<Soa> parse_soa(const RawRr& rr, const unsigned char* abuf, int alen) {
  const unsigned char* p = rr.rdata;
  const unsigned char* end = rr.rdata + rr.rdlen;
  long len = 0;
  auto mname = expand_name(p, abuf, alen, &len);
  if (!mname || len > end - p) return std::nullopt;
  p += len;
  auto rname = expand_name(p, abuf, alen, &len);
  if (!rname || len > end - p) return std::nullopt;
  p += len;
  if (end - p < 20) return std::nullopt;
  return Soa{printable_name(std::move(*mname)), printable_name(std::move(*rname)), read32(p),
             read32(p + 4), read32(p + 8), read32(p + 12), read32(p + 16)};
}

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 0x0f]);
  }
  return out;
}

// RFC 2181 §5.2: all RRs of an RRset carry the same TTL, so the set's smallest
// TTL is the TTL of each record the c-ares helpers return without one.
uint32_t rrset_ttl(const RawMessage& msg, uint16_t type) {
  uint32_t ttl = std::numeric_limits<uint32_t>::max();
  for (const RawRr& rr : msg.answer)
    if (rr.type == type && rr.rr_class == ns_c_in) ttl = std::min(ttl, rr.ttl);
  return ttl == std::numeric_limits<uint32_t>::max() ? 0 : ttl;
}

int render_a(const unsigned char* abuf, int alen, const RawMessage& msg, std::vector<Record>& out) {
  int count = std::max<int>(static_cast<int>(msg.answer.size()), 1);
  std::vector<ares_addrttl> ttls(static_cast<size_t>(count));
  hostent* host = nullptr;
  const int rc = ares_parse_a_reply(abuf, alen, &host, ttls.data(), &count);
  if (host != nullptr) ares_free_hostent(host);
  if (rc != ARES_SUCCESS) return rc;
  for (int i = 0; i < count; ++i) {
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &ttls[static_cast<size_t>(i)].ipaddr, text, sizeof text);
    out.push_back({ns_t_a, static_cast<uint32_t>(std::max(ttls[static_cast<size_t>(i)].ttl, 0)), text});
  }
  return ARES_SUCCESS;
}

int render_aaaa(const unsigned char* abuf, int alen, const RawMessage& msg, std::vector<Record>& out) {
  int count = std::max<int>(static_cast<int>(msg.answer.size()), 1);
  std::vector<ares_addr6ttl> ttls(static_cast<size_t>(count));
  hostent* host = nullptr;
  const int rc = ares_parse_aaaa_reply(abuf, alen, &host, ttls.data(), &count);
  if (host != nullptr) ares_free_hostent(host);
  if (rc != ARES_SUCCESS) return rc;
  for (int i = 0; i < count; ++i) {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, &ttls[static_cast<size_t>(i)].ip6addr, text, sizeof text);
    out.push_back({ns_t_aaaa, static_cast<uint32_t>(std::max(ttls[static_cast<size_t>(i)].ttl, 0)), text});
  }
  return ARES_SUCCESS;
}

int render_mx(const unsigned char* abuf, int alen, const RawMessage& msg, std::vector<Record>& out) {
  ares_mx_reply* head = nullptr;
  const int rc = ares_parse_mx_reply(abuf, alen, &head);
  if (rc != ARES_SUCCESS) return rc;
  std::vector<const ares_mx_reply*> mxs;
  for (const ares_mx_reply* mx = head; mx != nullptr; mx = mx->next) mxs.push_back(mx);
  // RFC 5321 §5.1: callers try MX hosts by preference; keep equal ones in server order.
  std::stable_sort(mxs.begin(), mxs.end(),
                   [](const ares_mx_reply* a, const ares_mx_reply* b) { return a->priority < b->priority; });
  const uint32_t ttl = rrset_ttl(msg, ns_t_mx);
  for (const ares_mx_reply* mx : mxs)
    out.push_back({ns_t_mx, ttl, std::to_string(mx->priority) + ' ' + printable_name(mx->host)});
  ares_free_data(head);
  return ARES_SUCCESS;
}

int render_txt(const unsigned char* abuf, int alen, const RawMessage& msg, std::vector<Record>& out) {
  ares_txt_ext* head = nullptr;
  const int rc = ares_parse_txt_reply_ext(abuf, alen, &head);
  if (rc != ARES_SUCCESS) return rc;
  const uint32_t ttl = rrset_ttl(msg, ns_t_txt);
  for (const ares_txt_ext* txt = head; txt != nullptr; txt = txt->next) {
    // One TXT RR holds several <character-string>s; c-ares flags the first of each RR.
    if (txt->record_start != 0 || out.empty()) out.push_back({ns_t_txt, ttl, {}});
    out.back().data.append(reinterpret_cast<const char*>(txt->txt), txt->length);
  }
  ares_free_data(head);
  return ARES_SUCCESS;
}

int render_hostent_aliases(int rc, hostent* host, uint16_t type, uint32_t ttl, std::vector<Record>& out) {
  if (rc != ARES_SUCCESS) return rc;
  for (char** alias = host->h_aliases; alias != nullptr && *alias != nullptr; ++alias)
    out.push_back({type, ttl, printable_name(*alias)});
  ares_free_hostent(host);
  return ARES_SUCCESS;
}

int render_ptr(const unsigned char* abuf, int alen, const RawMessage& msg, std::vector<Record>& out) {
  // The helper copies an address into the hostent it builds; we only want the
  // names (every PTR target is in h_aliases), so hand it a dummy.
  const unsigned char dummy[4] = {};
  hostent* host = nullptr;
  const int rc = ares_parse_ptr_reply(abuf, alen, dummy, sizeof dummy, AF_INET, &host);
  return render_hostent_aliases(rc, host, ns_t_ptr, rrset_ttl(msg, ns_t_ptr), out);
}

int render_ns(const unsigned char* abuf, int alen, const RawMessage& msg, std::vector<Record>& out) {
  hostent* host = nullptr;
  const int rc = ares_parse_ns_reply(abuf, alen, &host);
  return render_hostent_aliases(rc, host, ns_t_ns, rrset_ttl(msg, ns_t_ns), out);
}

int render_srv(const unsigned char* abuf, int alen, const RawMessage& msg, std::vector<Record>& out) {
  ares_srv_reply* head = nullptr;
  const int rc = ares_parse_srv_reply(abuf, alen, &head);
  if (rc != ARES_SUCCESS) return rc;
  std::vector<const ares_srv_reply*> srvs;
  for (const ares_srv_reply* srv = head; srv != nullptr; srv = srv->next) srvs.push_back(srv);
  // RFC 2782: lower priority first; weighted choice among equals is the caller's.
  std::stable_sort(srvs.begin(), srvs.end(),
                   [](const ares_srv_reply* a, const ares_srv_reply* b) { return a->priority < b->priority; });
  const uint32_t ttl = rrset_ttl(msg, ns_t_srv);
  for (const ares_srv_reply* srv : srvs)
    out.push_back({ns_t_srv, ttl,
                   std::to_string(srv->priority) + ' ' + std::to_string(srv->weight) + ' ' +
                       std::to_string(srv->port) + ' ' + printable_name(srv->host)});
  ares_free_data(head);
  return ARES_SUCCESS;
}

// SOA, CNAME, TLSA and unknown types straight from the answer section. SOA is
// ours rather than ares_parse_soa_reply because the same parser serves the
// authority section for negative TTLs, and the 1.18 helper returns one SOA only.
int render_manual(uint16_t type, const unsigned char* abuf, int alen, const RawMessage& msg,
                  std::vector<Record>& out) {
  for (const RawRr& rr : msg.answer) {
    if (rr.type != type || rr.rr_class != ns_c_in) continue;
    std::string data;
    if (type == ns_t_soa) {
      auto soa = parse_soa(rr, abuf, alen);
      if (!soa) return ARES_EBADRESP;
      data = soa->mname + ' ' + soa->rname + ' ' + std::to_string(soa->serial) + ' ' +
             std::to_string(soa->refresh) + ' ' + std::to_string(soa->retry) + ' ' +
             std::to_string(soa->expire) + ' ' + std::to_string(soa->minimum);
    } else if (type == ns_t_cname) {
      long len = 0;
      auto target = expand_name(rr.rdata, abuf, alen, &len);
      if (!target || len > rr.rdlen) return ARES_EBADRESP;
      data = printable_name(std::move(*target));
    } else if (type == kTypeTlsa) {
      // RFC 6698 §2.1: usage, selector, matching type (one octet each), then the data.
      if (rr.rdlen < 3) return ARES_EBADRESP;
      data = std::to_string(rr.rdata[0]) + ' ' + std::to_string(rr.rdata[1]) + ' ' +
             std::to_string(rr.rdata[2]) + ' ' + hex(rr.rdata + 3, rr.rdlen - 3u);
    } else {
      // RFC 3597 §5: the generic presentation of an RR type we do not know.
      data = "\\# " + std::to_string(rr.rdlen);
      if (rr.rdlen > 0) data += ' ' + hex(rr.rdata, rr.rdlen);
    }
    out.push_back({type, rr.ttl, std::move(data)});
  }
  return out.empty() ? ARES_ENODATA : ARES_SUCCESS;
}

int render(uint16_t type, const unsigned char* abuf, int alen, const RawMessage& msg,
           std::vector<Record>& out) {
  switch (type) {
    case ns_t_a: return render_a(abuf, alen, msg, out);
    case ns_t_aaaa: return render_aaaa(abuf, alen, msg, out);
    case ns_t_mx: return render_mx(abuf, alen, msg, out);
    case ns_t_txt: return render_txt(abuf, alen, msg, out);
    case ns_t_ptr: return render_ptr(abuf, alen, msg, out);
    case ns_t_ns: return render_ns(abuf, alen, msg, out);
    case ns_t_srv: return render_srv(abuf, alen, msg, out);
    default: return render_manual(type, abuf, alen, msg, out);
  }
}

uint32_t answer_section_min_ttl(const RawMessage& msg) {
  uint32_t ttl = std::numeric_limits<uint32_t>::max();
  for (const RawRr& rr : msg.answer) ttl = std::min(ttl, rr.ttl);
  return ttl;
}

uint32_t cap(uint32_t ttl, std::chrono::seconds max_ttl) {
  const auto limit = static_cast<uint64_t>(std::max<std::chrono::seconds::rep>(max_ttl.count(), 0));
  return static_cast<uint32_t>(std::min<uint64_t>(ttl, limit));
}

Answer negative(Answer answer, Status status, const unsigned char* abuf, int alen,
                std::chrono::seconds max_ttl) {
  answer.status = status;
  answer.records.clear();
  uint32_t ttl = negative_ttl(abuf, alen);
  // A CNAME leading to the missing data expires with the CNAME.
  if (auto msg = parse_raw(abuf, alen)) ttl = std::min(ttl, answer_section_min_ttl(*msg));
  answer.min_ttl = cap(ttl, max_ttl);
  return answer;
}

}  // namespace

uint32_t negative_ttl(const unsigned char* abuf, int alen) {
  auto msg = parse_raw(abuf, alen);
  if (!msg) return kDefaultNegativeTtl;
  for (const RawRr& rr : msg->authority) {
    if (rr.type != ns_t_soa || rr.rr_class != ns_c_in) continue;
    auto soa = parse_soa(rr, abuf, alen);
    if (!soa) break;
    // RFC 2308 §5: the negative TTL is the lesser of the SOA's TTL and its MINIMUM field.
    return std::min(rr.ttl, soa->minimum > 0x7fffffffU ? 0U : soa->minimum);
  }
  return kDefaultNegativeTtl;
}

Answer make_answer(std::string_view name, uint16_t type, int ares_status, const unsigned char* abuf,
                   int alen, std::chrono::seconds max_ttl) {
  Answer answer;
  answer.name = std::string(name);
  answer.type = type;
  switch (ares_status) {
    case ARES_SUCCESS: break;
    case ARES_ENODATA: return negative(std::move(answer), Status::NoData, abuf, alen, max_ttl);
    case ARES_ENOTFOUND: return negative(std::move(answer), Status::NxDomain, abuf, alen, max_ttl);
    case ARES_ETIMEOUT: answer.status = Status::Timeout; return answer;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION: answer.status = Status::Cancelled; return answer;
    default: answer.status = Status::ServFail; return answer;
  }
  auto msg = parse_raw(abuf, alen);
  if (!msg) {
    answer.status = Status::ServFail;
    return answer;
  }
  const int rc = render(type, abuf, alen, *msg, answer.records);
  // NOERROR with only a CNAME chain (or other types) in the answer is NODATA too.
  if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && answer.records.empty()))
    return negative(std::move(answer), Status::NoData, abuf, alen, max_ttl);
  if (rc != ARES_SUCCESS) {
    answer.records.clear();
    answer.status = Status::ServFail;
    return answer;
  }
  answer.status = Status::Ok;
  uint32_t min_ttl = answer_section_min_ttl(*msg);
  for (Record& record : answer.records) {
    record.ttl = cap(record.ttl, max_ttl);
    min_ttl = std::min(min_ttl, record.ttl);
  }
  answer.min_ttl = cap(min_ttl, max_ttl);
  return answer;
}

}  // namespace postern::core::dns
