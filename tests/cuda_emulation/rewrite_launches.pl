#!/usr/bin/perl
# Rewrites each CUDA launch `kernel<<<grid, block, smem, stream>>>(args)` of a .cu file (stdin) as
# `::cuemu::launch(::cuemu::Cfg(grid, block, smem, stream), kernel, args)` for the host compiler;
# a #line directive keeps diagnostics and debug information on the original file ($ARGV[0]).
use strict;
use warnings;
local $/;
my $source = <STDIN>;
$source =~ s/([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(/::cuemu::launch(::cuemu::Cfg($2), $1, /gs;
print "#line 1 \"$ARGV[0]\"\n", $source;
