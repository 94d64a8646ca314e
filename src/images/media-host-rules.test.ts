import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MediaHostRuleError, MediaHostRules, classifyAddress } from './media-host-rules.js';

describe('classifyAddress', () => {
  it('lets public unicast addresses through', () => {
    for (const address of ['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '[2a00:1450:4001:80b::200e]']) {
      assert.equal(classifyAddress(address), undefined, address);
    }
  });

  it('refuses every non-public range, IPv4 and IPv6', () => {
    const cases: [string, string][] = [
      ['127.0.0.1', 'loopback'],
      ['127.255.255.254', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.0.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'carrier-grade NAT'],
      ['100.127.255.255', 'carrier-grade NAT'],
      ['0.0.0.0', 'unspecified'],
      ['0.1.2.3', 'unspecified'],
      ['224.0.0.1', 'multicast'],
      ['239.255.255.250', 'multicast'],
      ['255.255.255.255', 'broadcast'],
      ['240.0.0.1', 'reserved'],
      ['192.0.2.1', 'reserved'],
      ['198.18.0.1', 'reserved'],
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['fe80::1', 'link-local'],
      ['fc00::1', 'private'],
      ['fd12:3456::1', 'private'],
      ['ff02::1', 'multicast'],
      ['::ffff:127.0.0.1', 'IPv4-embedding IPv6'],
      ['::ffff:8.8.8.8', 'IPv4-embedding IPv6'],
      ['::127.0.0.1', 'IPv4-embedding IPv6'],
      ['64:ff9b::a00:1', 'IPv4-embedding IPv6'],
      ['2002:7f00:1::', 'IPv4-embedding IPv6'],
      ['2001:0::1', 'IPv4-embedding IPv6'],
      ['2001:db8::1', 'reserved'],
      ['100::1', 'non-global IPv6'],
      ['not-an-ip', 'reserved'],
    ];
    for (const [address, kind] of cases) assert.equal(classifyAddress(address), kind, address);
  });
});

describe('MediaHostRules', () => {
  it('allows by address, CIDR, name and host:port; denies win', () => {
    const rules = new MediaHostRules({
      allow: ['127.0.0.2', '10.0.0.0/8', 'images.internal', 'cache.internal:8080', '[::1]:9000'],
      deny: ['10.9.0.0/16', 'evil.internal'],
    });
    assert.equal(rules.checkHost('127.0.0.2', 80).allowed, true);
    assert.equal(rules.checkHost('127.0.0.3', 80).allowed, false);
    assert.equal(rules.checkAddress('a.internal', 80, '10.1.1.1').allowed, true);
    assert.equal(rules.checkAddress('a.internal', 80, '10.9.1.1').allowed, false, 'the deny-list wins');
    assert.equal(rules.checkAddress('images.internal', 443, '192.168.1.5').allowed, true);
    assert.equal(rules.checkAddress('Images.Internal.', 443, '192.168.1.5').allowed, true, 'case and trailing dot do not matter');
    assert.equal(rules.checkAddress('cache.internal', 8080, '192.168.1.6').allowed, true);
    assert.equal(rules.checkAddress('cache.internal', 8081, '192.168.1.6').allowed, false, 'another port is not allowed');
    assert.equal(rules.checkHost('[::1]', 9000).allowed, true);
    assert.equal(rules.checkHost('[::1]', 9001).allowed, false);
    assert.equal(rules.checkHost('evil.internal', 80).allowed, false);
    assert.equal(rules.checkAddress('public.example', 443, '93.184.216.34').allowed, true);
    assert.equal(rules.checkAddress('x.example', 443, '::ffff:10.1.1.1').allowed, true, 'an allowed CIDR covers its IPv4-mapped form');
  });

  it('refuses entries it cannot understand, naming them', () => {
    for (const entry of ['', 'http://x', '10.0.0.0/99', 'a b', 'host:0', 'host:70000']) {
      assert.throws(() => new MediaHostRules({ allow: [entry] }), MediaHostRuleError, entry);
    }
  });
});
