#!/usr/bin/perl
# Rewrites each CUDA launch `kernel<<<grid, block, smem, stream>>>(args)` of a .cu file (stdin) as
# `::cuemu::launch(::cuemu::Cfg(grid, block, smem, stream), kernel, args)` for the host compiler;
# a #line directive keeps diagnostics and debug information on the original file ($ARGV[0]).
# Each __shared__ declaration is followed by calls that poison it when a block first reaches it.
use strict;
use warnings;
local $/;
my $source = <STDIN>;
$source =~ s/([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(/::cuemu::launch(::cuemu::Cfg($2), $1, /gs;
# After each `__shared__ T a[n], b;` (on one line), the block poisons what it declares, as a GPU
# leaves it garbage: `::cuemu::poison_shared(&a, sizeof(a));` for each name, on the same line.
$source =~ s{(__shared__\s+([^;\n]*);)}{$1 . poison_calls($2)}ge;
sub poison_calls {
  my ($declaration) = @_;
  $declaration =~ s/__align__\s*\([^)]*\)//g;
  $declaration =~ s/\[[^\]]*\]//g;
  my @calls;
  for my $declarator (split /,/, $declaration) {
    my ($name) = $declarator =~ /([A-Za-z_]\w*)\s*$/ or die "rewrite_launches: no name in `__shared__ $declaration`\n";
    push @calls, " ::cuemu::poison_shared(&$name, sizeof($name));";
  }
  return join '', @calls;
}
print "#line 1 \"$ARGV[0]\"\n", $source;
