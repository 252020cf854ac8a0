// URL host extraction and registered domains (table-driven).
#include "uri.hpp"

#include <gtest/gtest.h>

namespace postern::plugins::dnsbl {
namespace {

std::vector<std::string> hosts(std::string_view text, size_t limit = 100) {
  std::vector<std::string> out;
  extract_url_hosts(text, limit, out);
  return out;
}

TEST(DnsblUriTest, FindsHostsInTextAndHtml) {
  struct Case {
    const char* text;
    std::vector<std::string> want;
  };
  const Case cases[] = {
      {"visit http://Spam.Example.com/path?q=1 now", {"spam.example.com"}},
      {"HTTPS://user:pw@shop.example.net:8443/x", {"shop.example.net"}},
      {"<a href=\"http://a.example.org\">x</a> <a href='https://b.example.org/'>", {"a.example.org", "b.example.org"}},
      {"go to www.bare.example.", {"www.bare.example"}},
      {"awww.notaurl.example and x@www.mail.example", {}},
      {"http://192.0.2.7/login", {"192.0.2.7"}},
      {"http://%65vil.example/", {"evil.example"}},
      {"http://[2001:db8::1]/ http://3232235777/ http://localhost/ http://1.2.3/", {}},
      {"http://b\xc3\xbc" "cher.example/ http://xn--bcher-kva.example/", {"xn--bcher-kva.example"}},
      {"http://dup.example/a http://DUP.example/b www.dup.example", {"dup.example", "www.dup.example"}},
      {"http://evil.example&amp;x=1 (http://paren.example)", {"evil.example", "paren.example"}},
      {"ftp://ftp.example.org/ mailto:a@b.example", {}},
      {"http://", {}},
  };
  for (const Case& c : cases) EXPECT_EQ(hosts(c.text), c.want) << c.text;
}

TEST(DnsblUriTest, StopsAtTheLimit) {
  std::vector<std::string> out;
  EXPECT_FALSE(extract_url_hosts("http://a.example http://b.example http://c.example", 2, out));
  EXPECT_EQ(out, (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_FALSE(extract_url_hosts("http://d.example", 2, out));
  EXPECT_EQ(out.size(), 2u);
}

TEST(DnsblUriTest, BoundsTheWorkOnABodyMadeOfUrls) {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "http://h" + std::to_string(i) + ".example/ ";
  std::vector<std::string> out;
  EXPECT_FALSE(extract_url_hosts(text, 100000, out));
  EXPECT_EQ(out.size(), 4096u);
  // The same URL repeated is parsed once and found once.
  std::string same;
  for (int i = 0; i < 10000; ++i) same += "http://same.example/x ";
  out.clear();
  EXPECT_FALSE(extract_url_hosts(same + "http://last.example/", 10, out));  // the budget ends the scan
  EXPECT_EQ(out, std::vector<std::string>{"same.example"});
}

TEST(DnsblUriTest, RegisteredDomains) {
  const std::pair<const char*, const char*> cases[] = {
      {"www.spam.example.com", "example.com"},
      {"example.com", "example.com"},
      {"a.b.shop.co.uk", "shop.co.uk"},
      {"shop.co.uk", "shop.co.uk"},
      {"co.uk", "co.uk"},
      {"x.y.example.com.au", "example.com.au"},
      {"police.uk", "police.uk"},
      {"a.b.police.uk", "b.police.uk"},
      {"192.0.2.7", "192.0.2.7"},
      {"foo.blogspot.com", "blogspot.com"},  // private suffixes are not built in (documented)
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(registered_domain(in), want) << in;
}

}  // namespace
}  // namespace postern::plugins::dnsbl
